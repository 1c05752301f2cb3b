"""Counterexample search with Hypothesis, seeded, shrinking to a minimal failing case.

``explore(strategy, measure, fails=..., ...)`` evaluates ``measure(case)`` on the
cases Hypothesis generates from ``strategy``; if ``fails(measurement)`` is ever
true, Hypothesis shrinks the case and the minimal failing case is returned with
its measurement. All evaluated measurements are kept, so a check can report the
worst figure over everything it tried, not only the failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, assume, given, seed, settings
from hypothesis import strategies as st


class _Failure(Exception):
    pass


@dataclasses.dataclass
class Exploration:
    records: list[tuple[Any, Any]]
    counterexample: tuple[Any, Any] | None

    @property
    def cases(self) -> int:
        return len(self.records)

    @property
    def measurements(self) -> list[Any]:
        return [m for _, m in self.records]


def reject() -> None:
    """Inside ``measure``: the generated case is one the generator must not produce (the check counts why);
    Hypothesis discards it and draws another."""
    assume(False)


def explore(strategy: st.SearchStrategy, measure: Callable[[Any], Any], *, max_examples: int, seed_value: int,
            fails: Callable[[Any], bool] = lambda measurement: False, shrink: bool = True) -> Exploration:
    """Runs ``measure`` over Hypothesis-generated cases; see the module docstring."""
    records: list[tuple[Any, Any]] = []
    failures: list[tuple[Any, Any]] = []
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=False, phases=phases,
              suppress_health_check=list(HealthCheck), print_blob=False, report_multiple_bugs=False)
    @seed(seed_value)
    @given(strategy)
    def probe(case):
        measurement = measure(case)
        records.append((case, measurement))
        if fails(measurement):
            failures.append((case, measurement))
            raise _Failure

    try:
        probe()
    except _Failure:
        pass
    # Hypothesis replays the minimal failing example last.
    return Exploration(records, failures[-1] if failures else None)
