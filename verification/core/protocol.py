"""The extension protocol: everything a check can offer the suite, the same for built-in statements and plugins.

A check is a subclass of :class:`~verification.core.model.Check` registered with
:func:`~verification.core.registry.register`. ``run`` is required; every other capability is a *hook*,
an attribute of the class that the check implements or leaves out. The suite asks :func:`offers` and
never looks a check up by its id: a hook a check does not implement is reported as **not offered**
(in ``--list``, by ``iclkd search``, ``--certify`` and ``iclkd bench tightness``), never skipped silently.
A hook may decline with a reason: declared once with :func:`not_applicable` (a probabilistic statement has
no single instance to certify), or raised for one input as :class:`NotApplicable`; either is reported as
``not applicable`` with the reason.

======================  =======================================================  ==============================
hook                    signature                                                used by
======================  =======================================================  ==============================
``run``                 ``run(self, ctx: RunContext) -> CheckResult``            ``iclkd verify``,
                                                                                 ``iclkd launch``
``mutants``             ``{name: description}`` (class attribute); ``run``       ``iclkd verify --self-test``
                        applies ``ctx.mutant`` to the quantity under test
``search_targets``      ``search_targets() -> Sequence[SearchTarget]``           ``iclkd search``
                        (classmethod or staticmethod)
``certificate_claims``  ``certificate_claims(worst_case: dict) -> list[Claim]``  ``iclkd verify --certify``,
                        (``verification.oracles.claims.Claim``); a key the       ``iclkd certify``
                        worst case lacks raises ``KeyError``: an error
``tightness_cells``     ``tightness_cells(mode: str) -> Sequence[TightnessCell]``  ``iclkd bench tightness``
                        (``mode``: ``tiny | quick | full``)
``tightness_fits``      ``tightness_fits(cells: list[dict], bootstrap:            ``iclkd bench tightness``
                        Bootstrap) -> {name: fit}``: slope fits over the         (``slopes``)
                        finished cells (``verification.cases.sweeps.Bootstrap``)
``tightness_figures``   ``tightness_figures(rows: list[dict], slopes: dict,     ``iclkd bench tightness``
                        plot) -> None``: one figure drawn with ``plot``'s       (``<id>.png``)
                        helpers (``benchmarks._tightness_report.Plot``)
``tightness_table``     ``tightness_table: TightnessTable`` (class attribute):   ``iclkd bench tightness``
                        the columns of the statement's table and a note          (``summary.md``)
``false_alarm_margin``  ``false_alarm_margin: Margin`` (class attribute):        ``iclkd bench false-alarms``
                        ``false_alarm_margin(result) -> {component: quantity /
                        threshold}``, and its ``meaning``
``real_model``          ``real_model: str`` (class attribute) names the model    ``iclkd verify --real-model``
                        the check runs on; ``available() -> str | None``
                        (classmethod) says why it cannot run here, or None
======================  =======================================================  ==============================

The ``tightness_*`` hooks refine a sweep that ``tightness_cells`` provides: ``tightness_fits`` receives the
statement's finished cell records (``{"parameter", "value", "spec", "rows", "raw", ...}``) and a bootstrap
(resample indices drawn from the run's seed, the number of resamples of the mode, percentile limits) and
returns ``{fit name: {"x", "y", "slope", "slope_lo", "slope_hi", ...}}`` (a ``bound_slope`` or
``predicted_slope`` is printed beside the slope); ``tightness_figures`` draws the statement's rows and fits
with the helpers of ``plot`` and saves one figure, ``<id>.png``. Without them the sweep's rows are still
reported, its fits and figure are reported not offered (``not_offered`` in ``tightness.json`` and
``summary.md``). Without ``tightness_table`` the statement's table has the default columns.

A check without ``false_alarm_margin`` has the margin ``worst / tolerance`` of its result, and the
false-alarm report says that the hook is not offered.

A check that sets ``real_model`` runs only under ``--real-model MODEL`` (never in a plain ``iclkd verify``);
it is listed by ``--list`` either way, marked ``unavailable`` with the reason when its model or extra is not
installed.

The order of the report is each check's ``order`` attribute (:class:`~verification.core.model.Check`).
docs/extending.md walks through a plugin that implements every hook.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from verification.core.model import Check

#: the hooks, in the order of the table above
HOOKS = ("run", "mutants", "search_targets", "certificate_claims", "tightness_cells", "tightness_fits",
         "tightness_figures", "tightness_table", "false_alarm_margin", "real_model")

#: what the suite reports for a hook a check does not implement
NOT_OFFERED = "not offered"


class NotApplicable(Exception):  # noqa: N818  (a verdict, not an error: "not applicable", with the reason)
    """Raised by a hook that does not apply to this input (the message is the reason, reported as is)."""


class HookError(Exception):
    """A hook that is implemented but broken: it returned the wrong type, or its input lacks what it names."""


def not_applicable(reason: str) -> staticmethod:
    """A hook implementation that declines every input with ``reason``: ``certificate_claims =
    not_applicable("probabilistic: ...")``. The suite reports ``not applicable`` with the reason without
    calling it (:func:`declined`)."""

    def hook(*args: Any, **kwargs: Any):
        raise NotApplicable(reason)

    hook.not_applicable_reason = reason  # type: ignore[attr-defined]
    return staticmethod(hook)


def declined(cls: type[Check], hook: str) -> str | None:
    """The reason a hook declared with :func:`not_applicable` gives, or None."""
    return getattr(getattr(cls, hook, None), "not_applicable_reason", None)


def offers(cls: type[Check], hook: str) -> bool:
    """Whether ``cls`` implements ``hook`` (one of :data:`HOOKS`)."""
    if hook not in HOOKS:
        raise ValueError(f"unknown hook {hook!r}; the hooks are {', '.join(HOOKS)}")
    if hook == "run":
        return getattr(cls, "run", Check.run) is not Check.run
    if hook == "mutants":
        return bool(getattr(cls, "mutants", None))
    if hook == "real_model":
        return isinstance(getattr(cls, "real_model", None), str)
    if hook == "tightness_table":
        return isinstance(getattr(cls, "tightness_table", None), TightnessTable)
    if hook == "false_alarm_margin":
        return isinstance(getattr(cls, "false_alarm_margin", None), Margin)
    return callable(getattr(cls, hook, None))


def offered(cls: type[Check]) -> dict[str, bool]:
    """``{hook: implemented?}`` for every hook of :data:`HOOKS`."""
    return {hook: offers(cls, hook) for hook in HOOKS}


def not_offered(cls: type[Check], hook: str) -> str:
    """The one-line reason reported when ``cls`` does not implement ``hook``."""
    return f"{NOT_OFFERED}: check {cls.id} does not implement the {hook} hook (verification.core.protocol)"


def unavailable(cls: type[Check]) -> str | None:
    """Why a real-model check cannot run in this installation (its ``available()`` hook), or None if it can."""
    probe = getattr(cls, "available", None)
    return probe() if callable(probe) else None


@dataclasses.dataclass(frozen=True)
class TightnessCell:
    """One cell of a tightness sweep (``iclkd bench tightness``): one statement at one parameter value.

    Attributes:
      parameter: what the sweep varies (``"N"``, ``"t (translation)"``, ...); ``value``: its value here.
      spec: every parameter of the cell (JSON-serialisable; with the seed, it keys the cell's cache file).
      compute: ``compute(spec, seed) -> {"rows": [{"quantity", "bound", "observed", ...}], "raw": {...}}``:
        ``bound`` (None where the statement gives none) against ``observed`` for each quantity, and the
        raw draws the sweep's slopes are bootstrapped from.
      kind: ``theorem`` (a proven bound: ``bound < observed`` fails the benchmark), ``conjecture`` or
        ``prediction`` (a rate the statement predicts; reported, not judged).
    """

    parameter: str
    value: Any
    spec: dict
    compute: Callable[[dict, int], dict]
    kind: str = "theorem"


@dataclasses.dataclass(frozen=True)
class TightnessTable:
    """The table of one statement in a tightness sweep's ``summary.md`` (the ``tightness_table`` hook).

    Attributes:
      columns: the row keys shown, in order (a row without one shows ``–``).
      note: Markdown printed under the table (what a column means for this statement), or empty.
    """

    columns: tuple[str, ...]
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Margin:
    """How close a result came to ``violated`` (the ``false_alarm_margin`` hook; ``iclkd bench false-alarms``).

    ``margin(result)`` returns ``{component: judged quantity / its violation threshold}`` (> 1 is a
    violation); a component the result does not carry is left out (the helpers of
    :mod:`verification.core.margins` read figures that way). ``meaning`` says in one sentence what the margin
    measures and what it leaves out (pass/fail judgements that report no number); the reports print it.
    """

    meaning: str
    components: Callable[[Any], dict[str, float]]

    def __call__(self, result: Any) -> dict[str, float]:
        return self.components(result)
