"""The public API for writing checks outside the project: everything a plugin needs, from one place.

Stable: these names keep their meaning across releases (a change is announced, never silent).
Everything else under ``verification`` is the suite's own machinery.

Writing a check (docs/extending.md walks through a plugin that implements every hook of
:mod:`verification.core.protocol`; the README has a short example, "A claim of your own")::

    from verification import api

    @api.register
    class MyClaim(api.Check):
        id = "my-claim"                      # unique; shown in the report and accepted by --only
        kind = "theorem"                     # api.Kind: theorem | lemma | conjecture
        title = "one line"
        mutants = {"off-by-two": "the quantity doubled"}   # bugs the check must catch (--self-test)

        def run(self, ctx: api.RunContext) -> api.CheckResult:
            ...                              # ctx.profile, ctx.seed, ctx.key, ctx.mutant
            return self.result(ctx, status="holds", cases=n, worst=worst, worst_label="max error/tolerance",
                               tolerance=tol, tolerance_reason="why this tolerance")

and run it with ``iclkd verify --plugin my_claim.py`` (``--self-test`` runs its mutants), or declare
it as an entry point of the group ``iclkd.checks`` (:mod:`verification.engine.plugins`).

Contents:

* the registry: :class:`Check`, :func:`register`, :class:`RunContext`, :class:`CheckResult`,
  :data:`PROFILES` (:class:`Profile`), :data:`KINDS`, :data:`STATUSES`, the ``Kind``, ``Status``
  and ``ProfileName`` literals, :func:`all_checks`;
* running: :func:`run_check` (one check, float64, an exception becomes status ``error``),
  :func:`enable_x64`;
* searching: :func:`explore` (Hypothesis cases, shrunk counterexamples) and :class:`Exploration`;
  worst-case search by gradient ascent (``iclkd search``): a check's ``search_targets()`` classmethod
  returns :class:`SearchTarget` objects (protocol in :mod:`verification.search.ascent`), run by
  :func:`run_search`; constraint maps :func:`project_to_ball`, :func:`project_rows_to_ball`,
  :func:`project_to_spectral_ball`, :func:`project_to_box`, :func:`project_to_simplex`, :func:`simplex`,
  :func:`qr_isometry`, :func:`cayley`;
* the case strategies: :func:`attention_cases` and :class:`AttentionCase` (``case.build()`` gives
  ``(weights, demos, context, queries)``), :func:`standard_normal_pool`;
* judging: the module :mod:`reference` (independent float64 NumPy implementations of every
  quantity of docs/statements.md; compare the library with it, never with itself) and
  :func:`relative_tolerance` / :func:`eps` (round-off budgets from dtype and conditioning);
* plugins: :func:`load_plugin`, :data:`ENTRY_POINT_GROUP`;
* the extension protocol (:mod:`verification.core.protocol`): :data:`HOOKS`, :func:`offers`, :func:`offered`,
  :class:`TightnessCell` (the ``tightness_cells`` hook), :class:`Bootstrap`, :func:`ols_slope` and
  :func:`points` (the ``tightness_fits`` and ``tightness_figures`` hooks), :class:`TightnessTable` (the
  ``tightness_table`` hook), :class:`Margin` and :func:`worst_over_tolerance` (the ``false_alarm_margin``
  hook; more readers in :mod:`verification.core.margins`), :class:`NotApplicable` and :func:`not_applicable`
  (a hook that declines, with its reason), :func:`load_real_model` and :func:`real_model_unavailable` (the
  ``real_model`` hook);
* certificate claims (the ``certificate_claims`` hook) are built with ``verification.oracles.claims.Claim``
  and the balls of ``verification.oracles.balls``, imported inside the hook: they need python-flint.
"""

from __future__ import annotations

from verification import enable_x64
from verification.cases.explore import Exploration, explore
from verification.cases.strategies import AttentionCase, attention_cases, standard_normal_pool
from verification.cases.sweeps import Bootstrap, ols_slope, points
from verification.core.errors import ModelUnavailable, PluginError
from verification.core.margins import worst_over_tolerance
from verification.core.model import (
    KINDS,
    PROFILES,
    STATUSES,
    Check,
    CheckResult,
    Kind,
    Profile,
    ProfileName,
    RunContext,
    Status,
)
from verification.core.protocol import (
    HOOKS,
    Margin,
    NotApplicable,
    TightnessCell,
    TightnessTable,
    not_applicable,
    offered,
    offers,
)
from verification.core.registry import register
from verification.core.tolerances import eps, relative_tolerance
from verification.engine.plugins import ENTRY_POINT_GROUP, all_checks, load_plugin
from verification.engine.runner import run_check
from verification.oracles import reference
from verification.real_models.checks import check_available as _check_model
from verification.real_models.checks import loaded as load_real_model
from verification.search.ascent import SearchResult, SearchTarget, run_search
from verification.search.projections import (
    cayley,
    project_rows_to_ball,
    project_to_ball,
    project_to_box,
    project_to_simplex,
    project_to_spectral_ball,
    qr_isometry,
    simplex,
)


def real_model_unavailable(name: str) -> str | None:
    """Why real model ``name`` (``minilm``, ``smollm2``) cannot be loaded here (the install command), or None:
    what a plugin's real-model check returns from its ``available()`` hook."""
    try:
        _check_model(name)
    except ModelUnavailable as err:
        return str(err)
    return None


__all__ = [
    "HOOKS",
    "ModelUnavailable",
    "NotApplicable",
    "TightnessCell",
    "TightnessTable",
    "Margin",
    "Bootstrap",
    "ols_slope",
    "points",
    "worst_over_tolerance",
    "load_real_model",
    "not_applicable",
    "offered",
    "offers",
    "real_model_unavailable",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "PROFILES",
    "STATUSES",
    "AttentionCase",
    "Check",
    "CheckResult",
    "Exploration",
    "Kind",
    "PluginError",
    "Profile",
    "ProfileName",
    "RunContext",
    "SearchResult",
    "SearchTarget",
    "Status",
    "all_checks",
    "attention_cases",
    "cayley",
    "enable_x64",
    "eps",
    "explore",
    "load_plugin",
    "project_rows_to_ball",
    "project_to_ball",
    "project_to_box",
    "project_to_simplex",
    "project_to_spectral_ball",
    "qr_isometry",
    "reference",
    "register",
    "relative_tolerance",
    "run_check",
    "run_search",
    "simplex",
    "standard_normal_pool",
]
