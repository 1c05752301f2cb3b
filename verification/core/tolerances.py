"""Tolerances derived from dtype and conditioning (docs/statements.md#hazards: "Numbers are honest").

A relative error of a computed quantity is bounded by ``c * cond * eps`` where
``eps`` is the unit round-off of the dtype, ``cond`` the condition number of the
quantity, and ``c`` a modest constant for the length of the computation. Each check
calls :func:`relative_tolerance` with its condition estimate and writes the reason
next to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from verification.core.errors import NonFiniteError


def eps(dtype) -> float:
    return float(np.finfo(np.dtype(dtype)).eps)


def relative_tolerance(dtype, *, condition: float = 1.0, operations: float = 64.0) -> float:
    """``operations * condition * eps(dtype)``: the round-off budget of a sum of ``operations`` terms.

    With ``operations = 64`` and ``condition = 1``: 1.4e-14 in float64, 7.6e-6 in float32.
    """
    return float(operations * max(condition, 1.0) * eps(dtype))


def require_finite(quantities: Mapping[str, object], case_of: Callable[[int], dict] | None = None, *,
                   allow_inf: bool = False, logs: Mapping[str, object] | None = None) -> None:
    """Raises :class:`~verification.core.errors.NonFiniteError` for the first quantity holding a NaN (or an
    infinity, unless ``allow_inf``), naming it and the case: the index along the leading (batch) axis and, with
    ``case_of``, that case's inputs. ``logs`` are quantities given as logarithms: ``-inf`` is the log of 0 there,
    a value; NaN and ``+inf`` are not.

    Every check calls this on what it judges with (the library's values, the reference's, the tolerances) before
    it judges: a comparison with a NaN is neither true nor false, and one with an infinity only says that a float
    overflowed, so neither may become ``violated`` (or ``holds``). ``allow_inf`` is for scores that are +inf by
    design, e.g. a positive left-hand side over a bound that is exactly 0: a finite inequality that failed.
    """
    checked = [(name, values, False) for name, values in quantities.items()]
    checked += [(name, values, True) for name, values in (logs or {}).items()]
    for name, values, is_log in checked:
        array = np.asarray(values, np.float64)
        bad = np.isnan(array) if allow_inf else ~np.isfinite(array)
        if is_log:
            bad &= array != -np.inf
        if not bad.any():
            continue
        value = float(array[bad].flat[0])
        if array.ndim == 0:
            raise NonFiniteError(name, value)
        index = int(np.flatnonzero(bad.reshape(array.shape[0], -1).any(axis=1))[0])
        case = {"index": index, **(case_of(index) if case_of is not None else {})}
        raise NonFiniteError(name, value, case)


def bound_ratio_status(observed: np.ndarray, bound: np.ndarray, crosscheck: np.ndarray, tolerance: np.ndarray, *,
                       inconclusive_above: float = 1e-3) -> tuple[str, float, np.ndarray]:
    """The verdict on ``observed <= bound`` (element-wise), with a cross-check against a reference.

    ``violated`` when ``observed > bound (1 + tolerance)`` or a cross-check difference exceeds ``tolerance``
    (element-wise); ``inconclusive`` when the largest tolerance is above ``inconclusive_above`` (the round-off
    budget is then too wide for a verdict); else ``holds``. The inequality is judged on its two finite sides,
    not on their ratio: a positive ``observed`` over a bound that is exactly 0 is a finite violation, while a
    NaN or an infinity in any of the four inputs raises :class:`~verification.core.errors.NonFiniteError`
    (status ``error``). Returns the status, the largest tolerance and the ratios ``observed / bound`` for the
    report (``inf`` where a positive ``observed`` meets a zero bound, 0 where both are 0).
    """
    require_finite({"observed": observed, "bound": bound, "cross-check difference": crosscheck,
                    "tolerance": tolerance})
    observed, bound = np.asarray(observed, dtype=float), np.asarray(bound, dtype=float)
    positive = bound > 0
    ratio = np.where(positive, observed / np.where(positive, bound, 1.0), np.where(observed > 0, np.inf, 0.0))
    largest = float(np.max(tolerance))
    if largest > inconclusive_above:
        return "inconclusive", largest, ratio
    violated = bool(np.any(observed > bound * (1.0 + tolerance)) or np.any(crosscheck > tolerance))
    return ("violated" if violated else "holds"), largest, ratio


#: the bar the real-model Theorem 3.1(a) checks must meet in float64
REAL_MODEL_CEILING = 1e-10


def real_attention_tolerance(logit_bound: float) -> float:
    """Tolerance of a real model's attention split relative to ``max|v_j|``, float64.

    A logit ``q.k`` carries an absolute round-off ``<= (d+1) eps |q||k|`` (a dot product, Cauchy-Schwarz),
    which perturbs each softmax weight by that relative amount and the output by that much relative to
    ``max|v|``; folding ``1/sqrt(d_k)`` adds ``eps`` per entry. ``64 eps (1 + max|q||k|)`` covers it with the
    usual constant (cf. thm-3.1a), capped at :data:`REAL_MODEL_CEILING`.
    """
    return min(64 * eps("float64") * (1.0 + float(logit_bound)), REAL_MODEL_CEILING)
