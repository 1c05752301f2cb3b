"""The run-wide false-alarm budget: every statistical judgement takes its level from one declared budget.

A theorem or a lemma that holds is called ``violated`` by a deterministic judgement never (its tolerance
covers the generator's whole range by an error analysis) and by a statistical one (a confidence interval,
a Monte Carlo rate, a fitted slope, a permutation test's size) with some probability. The suite declares

    P(any false ``violated`` in one run) <= FALSE_ALARM_BUDGET = 1e-3

and splits it by Bonferroni over every statistical judgement of every registered check for the run's
profile (a union bound: no independence assumed): each check declares its judgements with
:meth:`verification.core.model.Check.statistical_judgements` (a count per kind of judgement for the profile,
and whether it is one- or two-sided), and each single judgement runs at level
``alpha = FALSE_ALARM_BUDGET / (total count)``, a two-sided normal interval at ``z = Phi^{-1}(1 - alpha/2)``,
a one-sided one at ``z = Phi^{-1}(1 - alpha)``. The levels multiply out to the budget:
``sum over judgements of alpha = FALSE_ALARM_BUDGET``. The split counts every registered check whether or
not the run selects it (``--only``), so a check's verdict does not depend on which others run.

Conjecture verdicts (``refuted`` / ``survives``) are not ``violated`` verdicts; a conjecture check's
statistical judgements that can give ``violated`` (a disagreement of the library with the reference) are
in the budget like any other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

#: P(any false ``violated`` in one run of the suite), whatever the profile
FALSE_ALARM_BUDGET = 1e-3


@dataclasses.dataclass(frozen=True)
class Judgement:
    """One kind of statistical judgement of a check: ``count`` of them per run, each one- or two-sided."""

    count: int
    sides: int
    description: str

    def __post_init__(self):
        if self.sides not in (1, 2):
            raise ValueError(f"sides must be 1 or 2, got {self.sides!r}")
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count!r}")


def normal_quantile(upper_tail: float) -> float:
    """``z`` with ``P(N(0, 1) > z) = upper_tail``."""
    from scipy import stats  # here: the check model imports this module, and importing it must stay light

    return float(stats.norm.isf(upper_tail))


def declared(checks: Mapping[str, Any], profile) -> dict[str, dict[str, Judgement]]:
    """``{check id: {judgement: Judgement}}`` for every check that declares statistical judgements."""
    out = {}
    for cid, cls in checks.items():
        judgements = {name: j for name, j in cls.statistical_judgements(profile).items() if j.count}
        if judgements:
            out[cid] = judgements
    return out


def level_each(checks: Mapping[str, Any], profile) -> float:
    """``alpha`` of one statistical judgement: the budget over the total count (the budget itself if none)."""
    total = sum(j.count for judgements in declared(checks, profile).values() for j in judgements.values())
    return FALSE_ALARM_BUDGET / max(total, 1)


def z_of(alpha: float, sides: int) -> float:
    """The normal critical value of a judgement at level ``alpha``: ``Phi^{-1}(1 - alpha / sides)``."""
    return normal_quantile(alpha / sides)


def split(checks: Mapping[str, Any], profile) -> dict:
    """The budget and how it is split (for the reports): JSON-serialisable."""
    alpha = level_each(checks, profile)
    per_check = {cid: {name: {"count": j.count, "sides": j.sides, "level": alpha, "z": z_of(alpha, j.sides),
                              "description": j.description} for name, j in judgements.items()}
                 for cid, judgements in declared(checks, profile).items()}
    total = sum(j["count"] for judgements in per_check.values() for j in judgements.values())
    return {"family_wise_false_violated": FALSE_ALARM_BUDGET, "method": "Bonferroni",
            "judgements": total, "level_each": alpha, "levels_sum": alpha * total,
            "profile": profile.name, "checks": per_check}


def describe(budget: dict) -> str:
    """One line: the budget, the split and the counts per check."""
    counts = ", ".join(f"{cid} {sum(j['count'] for j in judgements.values())}"
                       for cid, judgements in budget["checks"].items())
    alpha = budget["level_each"]
    return (f"false-alarm budget: P(any false violated) <= {budget['family_wise_false_violated']:g} per run, "
            f"Bonferroni over {budget['judgements']} statistical judgements ({counts}), each at level {alpha:.2g} "
            f"(z = {z_of(alpha, 2):.2f} two-sided, {z_of(alpha, 1):.2f} one-sided); deterministic judgements have "
            f"no level: their tolerances cover the generator's range")

