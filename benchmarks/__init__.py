"""Benchmarks of the library and the bounds (``iclkd bench NAME``).

:data:`BENCHMARKS` is the registry behind ``iclkd bench``: one line per benchmark, its summary and the
function that imports its module (only when it runs: ``iclkd bench --help`` imports none of them). Each
module provides ``add_arguments(parser)`` and ``run(args) -> int`` (see :mod:`verification.io.command`);
add a benchmark by adding its line here.
"""

from __future__ import annotations

from verification.io.command import Command


def _tightness():
    from benchmarks import tightness

    return tightness


def _perf():
    from benchmarks import perf

    return perf


def _mutation():
    from benchmarks import mutation

    return mutation


def _false_alarms():
    from benchmarks import false_alarms

    return false_alarms


BENCHMARKS = {
    "tightness": Command("how tight the bounds of docs/statements.md are and how they scale (docs/tightness.md)",
                         _tightness),
    "perf": Command("speed and scale of the hot paths against NumPy, scikit-learn and the machine's limit "
                    "(docs/performance.md)", _perf),
    "mutation": Command("source-mutation score: planted library bugs that iclkd verify kills, per check "
                        "(README, docs/theorems.md)", _mutation),
    "false-alarms": Command("the suite over many seeds: violated/error/inconclusive counts and each check's margin "
                            "to a false alarm (README, docs/theorems.md)", _false_alarms),
}
