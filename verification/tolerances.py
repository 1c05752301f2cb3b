"""Tolerances derived from dtype and conditioning (THEOREMS.md: "Numbers are honest").

A relative error of a computed quantity is bounded by ``c * cond * eps`` where
``eps`` is the unit round-off of the dtype, ``cond`` the condition number of the
quantity, and ``c`` a modest constant for the length of the computation. Each check
calls :func:`relative_tolerance` with its condition estimate and writes the reason
next to it.
"""

from __future__ import annotations

import numpy as np


def eps(dtype) -> float:
    return float(np.finfo(np.dtype(dtype)).eps)


def relative_tolerance(dtype, *, condition: float = 1.0, operations: float = 64.0) -> float:
    """``operations * condition * eps(dtype)``: the round-off budget of a sum of ``operations`` terms.

    With ``operations = 64`` and ``condition = 1``: 1.4e-14 in float64, 7.6e-6 in float32.
    """
    return float(operations * max(condition, 1.0) * eps(dtype))



def bound_ratio_status(ratio: np.ndarray, crosscheck: np.ndarray, tolerance: np.ndarray, *,
                       inconclusive_above: float = 1e-3) -> tuple[str, float]:
    """The verdict on ratios observed/bound that must stay <= 1, with a cross-check against a reference.

    ``violated`` when a ratio exceeds ``1 + tolerance``, a cross-check difference exceeds ``tolerance``
    (element-wise) or a ratio is not finite; ``inconclusive`` when the largest tolerance is above
    ``inconclusive_above`` (the round-off budget is then too wide for a verdict); else ``holds``.
    Returns the status and the largest tolerance.
    """
    largest = float(np.max(tolerance))
    if largest > inconclusive_above:
        return "inconclusive", largest
    violated = bool(np.any(ratio > 1.0 + tolerance) or np.any(crosscheck > tolerance)
                    or not np.all(np.isfinite(ratio)))
    return ("violated" if violated else "holds"), largest
