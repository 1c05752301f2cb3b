"""Counterexample search with Hypothesis, seeded, shrinking to a minimal failing case.

``explore(strategy, measure, fails=..., ...)`` evaluates ``measure(case)`` on the
cases Hypothesis generates from ``strategy``; if ``fails(measurement)`` is ever
true, Hypothesis shrinks the case and the minimal failing case is returned with
its measurement. All evaluated measurements are kept, so a check can report the
worst figure over everything it tried, not only the failure.

The cases depend on the seed and the strategy only: Hypothesis's constants harvested from
the source of the loaded modules are switched off (:func:`_without_local_constants`), so the
same seed gives the same cases whichever modules a run imports.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import HealthCheck, Phase, assume, given, seed, settings
from hypothesis import strategies as st

try:  # Hypothesis's pool of constants harvested from the source of local modules (see _without_local_constants)
    from hypothesis.internal.conjecture import providers as _providers
    from hypothesis.internal.constants_ast import Constants as _Constants
except ImportError:  # a Hypothesis without that pool: nothing to switch off
    _providers = _Constants = None


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


@contextlib.contextmanager
def _without_local_constants() -> Iterator[None]:
    """Hypothesis without the constants it harvests from local source files, for the duration of the block.

    With a small probability per draw, Hypothesis returns a literal constant found in the source of any
    *local* (not installed, not test) module loaded in the process. The cases of one seed would then
    depend on which of the suite's modules happen to be imported (``iclkd verify --only X`` against the
    full run, the CLI against the pytest plugin, ``--html``, a plugin) and on every literal written
    anywhere in them: the same seed would not give the same report. Here that pool is empty; Hypothesis's
    own constants (the same for every run of one Hypothesis version) are still drawn. The cache of
    permitted constants is keyed without the pool, so it is emptied on entry and on exit.
    """
    if _providers is None or not hasattr(_providers, "_get_local_constants"):
        yield
        return
    harvested = _providers._get_local_constants
    empty = _Constants()
    _providers._get_local_constants = lambda: empty
    _providers.CONSTANTS_CACHE.cache.clear()
    try:
        yield
    finally:
        _providers._get_local_constants = harvested
        _providers.CONSTANTS_CACHE.cache.clear()


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
        with _without_local_constants():
            probe()
    except _Failure:
        pass
    # Hypothesis replays the minimal failing example last.
    return Exploration(records, failures[-1] if failures else None)
