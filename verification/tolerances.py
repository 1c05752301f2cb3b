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


def relative_error(computed, reference, *, floor: float = 0.0) -> float:
    """``max|computed - reference| / max(max|reference|, floor)`` (a norm-wise relative error)."""
    computed = np.asarray(computed, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    scale = max(float(np.max(np.abs(reference))) if reference.size else 0.0, floor)
    diff = float(np.max(np.abs(computed - reference))) if reference.size else 0.0
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale
