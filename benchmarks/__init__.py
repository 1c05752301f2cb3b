"""Benchmarks of the library and the bounds (``iclkd bench NAME``).

:data:`BENCHMARKS` is the registry behind ``iclkd bench``: one line per benchmark. Each module
provides ``add_arguments(parser)`` and ``run(args) -> int`` (see :mod:`verification.command`); add a
benchmark by adding its line here.
"""

from __future__ import annotations

from verification.io.command import Command

BENCHMARKS = {
    "tightness": Command("how tight the bounds of docs/statements.md are and how they scale (docs/tightness.md)",
                         "benchmarks.tightness"),
    "perf": Command("speed and scale of the hot paths against NumPy, scikit-learn and the machine's limit "
                    "(docs/performance.md)", "benchmarks.perf"),
    "mutation": Command("source-mutation score: planted library bugs that iclkd verify kills, per check "
                        "(README, docs/theorems.md)", "benchmarks.mutation"),
    "false-alarms": Command("the suite over many seeds: violated/error/inconclusive counts and each check's margin "
                            "to a false alarm (README, docs/theorems.md)", "benchmarks.false_alarms"),
}
