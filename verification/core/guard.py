"""The wrapper every check runs in: float64, timed, an exception turned into a result with status ``error``."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable

import jax

from verification.core.model import CheckResult


def guarded(run: Callable[[], CheckResult], *, check_id: str, kind: str, seed: int,
            mutant: str | None = None) -> CheckResult:
    """``run()`` in float64 and timed; an exception becomes a result with status ``error``.

    The one wrapper of every check: a crashing check shows up in the report (``summary``: the exception's type and message;
    ``figures["traceback"]``: the last frames) instead of aborting the suite, and ``iclkd verify``
    exits 3. Ctrl-C (``KeyboardInterrupt``) is not an exception here: it stops the run.
    """
    start = time.perf_counter()
    try:
        with jax.enable_x64(True):  # checks are float64 whoever calls them (scoped: the caller's mode stays)
            result = run()
    except Exception as err:  # noqa: BLE001  (a check's failure of any kind is reported as its status, never lost)
        result = CheckResult(id=check_id, kind=kind, status="error", cases=0, worst=None,
                             worst_label="error", summary=f"check raised {type(err).__name__}: {err}",
                             figures={"traceback": traceback.format_exc(limit=5)}, seed=seed, mutant=mutant)
    result.elapsed_s = time.perf_counter() - start
    return result
