"""Checks that take a while, for the journal tests (``--plugin``): long enough to be killed in flight.

Each check sleeps ``ICLKD_TEST_UNIT_S`` seconds (default 1.5), then draws a figure from its own key,
so a rerun gives the same result as the first run. When ``ICLKD_TEST_UNIT_LOG`` names a file, each
check appends ``start ID PID`` before its work and ``end ID PID`` after it: the tests count from it
which units ran in which run.
"""

from __future__ import annotations

import os
import time

from verification import api


def _log(event: str, check_id: str) -> None:
    path = os.environ.get("ICLKD_TEST_UNIT_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(f"{event} {check_id} {os.getpid()}\n")


class _Slow(api.Check):
    kind = "conjecture"
    title = "a slow stand-in unit for the journal tests"
    mutants = {"shifted": "the figure shifted by 2"}

    def run(self, ctx: api.RunContext) -> api.CheckResult:
        import jax

        _log("start", self.id)
        time.sleep(float(os.environ.get("ICLKD_TEST_UNIT_S", "1.5")))
        figure = float(jax.random.uniform(ctx.key, dtype=jax.numpy.float64)) + (2.0 if ctx.mutant else 0.0)
        _log("end", self.id)
        return self.result(ctx, status="refuted" if figure > 1 else "survives", cases=1, worst=figure,
                           worst_label="a uniform draw from the check's own key")


@api.register
class SlowA(_Slow):
    id = "slow-a"


@api.register
class SlowB(_Slow):
    id = "slow-b"


@api.register
class SlowC(_Slow):
    id = "slow-c"


@api.register
class SlowD(_Slow):
    id = "slow-d"
