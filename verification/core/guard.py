"""The wrapper every check runs in: float64, timed; an exception or a NaN in the verdict turned into status ``error``."""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable

import jax
import numpy as np

from verification.core.errors import NonFiniteError
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
        non_finite = non_finite_field(result)
        if non_finite is not None:
            raise NonFiniteError(f"{check_id} result field {non_finite[0]}", non_finite[1])
    except NonFiniteError as err:
        result = CheckResult(id=check_id, kind=kind, status="error", cases=0, worst=None, worst_label="error",
                             summary=f"check computed a NaN or an infinity: {err}",
                             figures={"non_finite": {"quantity": err.quantity, "value": err.value, "case": err.case,
                                                     "library": err.library}},
                             seed=seed, mutant=mutant)
    except Exception as err:  # noqa: BLE001  (a check's failure of any kind is reported as its status, never lost)
        result = CheckResult(id=check_id, kind=kind, status="error", cases=0, worst=None,
                             worst_label="error", summary=f"check raised {type(err).__name__}: {err}",
                             figures={"traceback": traceback.format_exc(limit=5)}, seed=seed, mutant=mutant)
    result.elapsed_s = time.perf_counter() - start
    return result


def non_finite_field(result: CheckResult) -> tuple[str, float] | None:
    """The first field of a verdict that no finite computation gives: ``(path, value)``, else None.

    A NaN anywhere in ``worst``, ``tolerance`` or ``figures``, or a tolerance that is not finite. (An infinite
    ``worst`` or figure can be a verdict: a positive left-hand side over a bound that is exactly 0, e.g. the
    linear kernel's ``c_hat`` of conj-4.1.) The guard behind every check's own
    :func:`verification.core.tolerances.require_finite`, so that no check can forget it.
    """
    if result.status == "error":
        return None

    def walk(value, path):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, f"{path}.{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                yield from walk(v, f"{path}[{i}]")
        elif isinstance(value, np.ndarray) and value.dtype.kind in "fc" and np.isnan(value).any():
            yield path, float("nan")
        elif isinstance(value, (float, np.floating)) and math.isnan(value):
            yield path, float(value)

    if result.tolerance is not None and not math.isfinite(result.tolerance):
        return "tolerance", float(result.tolerance)
    for path, value in walk({"worst": result.worst, "figures": result.figures}, ""):
        return path.lstrip("."), value
    return None
