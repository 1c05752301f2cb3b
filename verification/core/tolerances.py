"""Tolerances derived from dtype and conditioning (docs/statements.md#hazards: "Numbers are honest").

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


#: the bar the real-model Theorem 3.1(a) checks must meet in float64 (issue 16)
REAL_MODEL_CEILING = 1e-10


def real_attention_tolerance(logit_bound: float) -> float:
    """Tolerance of a real model's attention split relative to ``max|v_j|``, float64.

    A logit ``q.k`` carries an absolute round-off ``<= (d+1) eps |q||k|`` (a dot product, Cauchy-Schwarz),
    which perturbs each softmax weight by that relative amount and the output by that much relative to
    ``max|v|``; folding ``1/sqrt(d_k)`` adds ``eps`` per entry. ``64 eps (1 + max|q||k|)`` covers it with the
    usual constant (cf. thm-3.1a), capped at :data:`REAL_MODEL_CEILING`.
    """
    return min(64 * eps("float64") * (1.0 + float(logit_bound)), REAL_MODEL_CEILING)
