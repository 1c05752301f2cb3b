"""The check model: :class:`Check`, :class:`CheckResult`, :class:`RunContext` and the :data:`PROFILES`.

One :class:`Check` per statement of docs/statements.md. A check module subclasses :class:`Check`, fills in
the class attributes and ``run``, and decorates the class with :func:`verification.core.registry.register`. ``run`` receives a
:class:`RunContext` (profile, seed, an explicit PRNG key, and possibly the name
of a mutant to inject) and returns a :class:`CheckResult`.

Mutants: each check lists in ``mutants`` the deliberate bugs it must catch (a
dropped term, eta off by 2, a wrong kernel, ...). ``run`` applies the named
mutation to the quantity under test (never to the reference it is compared
with). A mutant is caught when the mutated run's status is not ``holds`` (for a
theorem or lemma) or differs from the unmutated status (for a conjecture).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import sys
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

import numpy as np

from verification.core import budget

if TYPE_CHECKING:
    import jax

Kind = Literal["theorem", "lemma", "conjecture"]
#: ``error``: the check raised (its exception summary is in ``summary``); ``iclkd verify`` exits 3.
Status = Literal["holds", "violated", "refuted", "survives", "inconclusive", "error"]
ProfileName = Literal["smoke", "quick", "default", "thorough"]
KINDS: tuple[str, ...] = get_args(Kind)
STATUSES: tuple[str, ...] = get_args(Status)


@dataclasses.dataclass(frozen=True)
class Profile:
    """How hard to look. ``scale`` multiplies case counts; ``examples`` is Hypothesis' ``max_examples``;
    ``draws``: independent draws for probabilistic statements (Theorem 3.2); ``real_prompts``, ``real_tokens``:
    the ICL prompts a real-model Theorem 3.1 check feeds the model, and the tokens per domain (at most the
    smallest domain's) of a real-model Theorem 4.1 check."""

    name: ProfileName
    scale: int
    examples: int
    draws: int
    real_prompts: int
    real_tokens: int


PROFILES: dict[ProfileName, Profile] = {
    # "smoke" is for the test suite's mutant runs: enough cases to catch a bug, few compilations
    "smoke": Profile("smoke", scale=1, examples=4, draws=100, real_prompts=1, real_tokens=24),
    "quick": Profile("quick", scale=1, examples=12, draws=200, real_prompts=2, real_tokens=32),
    "default": Profile("default", scale=4, examples=40, draws=1000, real_prompts=3, real_tokens=48),
    "thorough": Profile("thorough", scale=16, examples=200, draws=4000, real_prompts=3, real_tokens=96),
}


assert set(PROFILES) == set(get_args(ProfileName)), "PROFILES and ProfileName must name the same profiles"


@dataclasses.dataclass
class RunContext:
    profile: Profile
    seed: int
    check_id: str
    mutant: str | None = None
    #: shrink counterexamples to a minimal case (the self-test only needs detection and skips it)
    shrink: bool = True

    @property
    def key(self) -> jax.Array:
        """A key that depends on the seed and the check id only (stable across runs and orders)."""
        import jax  # here: importing the check model (the CLI parses its choices) must not import JAX

        return jax.random.fold_in(jax.random.key(self.seed), zlib.crc32(self.check_id.encode()))

    @property
    def hypothesis_seed(self) -> int:
        return (self.seed * 1_000_003 + zlib.crc32(self.check_id.encode())) % (2**32)

    def level(self) -> float:
        """The level ``alpha`` of each of this check's statistical judgements: the run-wide false-alarm budget split
        by Bonferroni over every registered check (:mod:`verification.core.budget`)."""
        return budget.level_each(REGISTRY, self.profile)

    def z(self, judgement: str) -> float:
        """The normal critical value of one of this check's declared judgements at :meth:`level`."""
        sides = REGISTRY[self.check_id].statistical_judgements(self.profile)[judgement].sides
        return budget.z_of(self.level(), sides)

    def checkpoint(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()``: one independent step of this check (a setting, a law, drawn from its own key).

        A long check calls it for each step, with ``compute`` returning plain data (numbers, strings, lists,
        dicts). In a journaled run the step is journaled on its own, and ``--resume`` reuses the steps a
        stopped check had finished (:func:`verification.engine.journal.checkpoint`, installed as
        :data:`STEP_RUNNER`); NumPy values then come back as Python numbers and arrays as lists, with or
        without a journal, so that a reused step and a computed one give the same report.
        """
        return STEP_RUNNER(self, name, compute)


#: runs :meth:`RunContext.checkpoint`; the run journal (verification.engine.journal) installs its own
STEP_RUNNER: Callable[[RunContext, str, Callable[[], Any]], Any] = lambda ctx, name, compute: compute()


@dataclasses.dataclass
class CheckResult:
    """What one check measured.

    Attributes:
      id, kind: the check's.
      status: one of ``holds | violated | refuted | survives | inconclusive``.
      cases: how many cases (or draws) were evaluated.
      worst: the worst measured figure: a relative error against the tolerance, or a
        ratio (observed / bound) that must stay <= 1; see ``worst_label``.
      worst_label: what ``worst`` is (e.g. ``"max rel error"``, ``"max observed/bound"``).
      tolerance: the threshold ``worst`` is judged against, with ``tolerance_reason``.
      tightness: bound / observed where the statement is a bound (>= 1; 1 = tight), else None.
      figures: every other measured number (JSON-serialisable).
      counterexample: the smallest failing case found, where there is one.
      summary: one sentence for the table.
      worst_case: the exact float64 inputs of the worst case (or of the counterexample of a
        conjecture), as ``{name: nested lists or float}``: enough to recompute both sides of the
        statement from scratch (``iclkd verify --certify`` re-evaluates them in ball arithmetic).
        The keys are documented in the check's module docstring. None for probabilistic checks.
      certificate: filled in by ``--certify``: ``{"status": "proven" | "not proven" | "not applicable"
        | "violation proven", "lhs": "mid +/- rad", "rhs": ..., "precision_bits": int, "reason": str}``.
    """

    id: str
    kind: Kind
    status: Status
    cases: int
    worst: float | None
    worst_label: str
    tolerance: float | None = None
    tolerance_reason: str = ""
    tightness: float | None = None
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    counterexample: dict[str, Any] | None = None
    summary: str = ""
    worst_case: dict[str, Any] | None = None
    certificate: dict[str, Any] | None = None
    seed: int = 0
    mutant: str | None = None
    elapsed_s: float = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


class Check:
    """Base class of a check; see the module docstring.

    Class attributes:
      id: the registry id (``thm-3.1a``, ...).
      kind: ``theorem``, ``lemma`` or ``conjecture``.
      title: one line.
      mutants: ``{name: description}`` of the bugs this check must catch.
      order: the check's place in the report (and in ``--list``): checks are sorted by ``(order, id)``. The
        built-in statements use their section of docs/statements.md (3.1 -> 310, ...); a check that declares
        none follows them, sorted by id.
    The HTML report states each check's statement from docs/theorems.md where it can, else from
    :meth:`stated`.
    """

    id: ClassVar[str]
    kind: ClassVar[Kind]
    title: ClassVar[str]
    mutants: ClassVar[dict[str, str]] = {}
    order: ClassVar[float] = math.inf

    def run(self, ctx: RunContext) -> CheckResult:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def stated(cls) -> str:
        """The statement in one sentence (Markdown), for a report that finds no section of docs/theorems.md for the
        check: an installed package carries no docs/, a plugin has no section there.

        By default the first paragraph of the docstring of the module that defines the class: for a built-in
        statement its folder's docstring, which names the statement and its section of docs/statements.md; ""
        without a docstring. A check may override it.
        """
        module = sys.modules.get(cls.__module__)
        doc = inspect.getdoc(module) if module is not None else None
        return " ".join(doc.split("\n\n")[0].split()) if doc else ""

    @classmethod
    def statistical_judgements(cls, profile: Profile) -> dict[str, Any]:
        """``{name: verification.core.budget.Judgement(count, sides, description)}``: the judgements with a
        statistical component this check makes in one run of ``profile`` (none by default). Each takes its level
        from the run-wide false-alarm budget (:meth:`RunContext.level`, :meth:`RunContext.z`)."""
        return {}

    def result(self, ctx: RunContext, **fields: Any) -> CheckResult:
        """A :class:`CheckResult` with this check's id, kind, seed and mutant filled in."""
        return CheckResult(id=self.id, kind=self.kind, seed=ctx.seed, mutant=ctx.mutant, **fields)


#: every registered check class by id (built-in statements, real-model variants, plugins): filled by
#: :func:`verification.core.registry.register`; the budget of :meth:`RunContext.level` is split over it
REGISTRY: dict[str, type[Check]] = {}


#: how many quantiles :func:`case_quantiles` records (0 %, 1 %, ..., 100 %)
CASE_QUANTILES = 101


def case_quantiles(values, measure: str, limit: float | None = None) -> dict[str, Any]:
    """The distribution over cases of a judged per-case figure, small enough for every report:
    ``{"measure", "limit", "values"}`` with ``values`` its 0 %, 1 %, ..., 100 % quantiles (non-finite cases
    left out and counted in ``"non_finite"``). Stored as ``figures["per_case_quantiles"]``; the HTML report
    plots it as a distribution against ``limit`` (for a bound: observed/bound against 1).
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    finite = flat[np.isfinite(flat)]
    quantiles = np.quantile(finite, np.linspace(0.0, 1.0, CASE_QUANTILES)).tolist() if finite.size else []
    return {"measure": measure, "limit": limit, "values": quantiles, "non_finite": int(flat.size - finite.size)}
