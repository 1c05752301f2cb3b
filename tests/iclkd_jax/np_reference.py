"""Independent NumPy float64 references for the core library's tests.

Written from docs/statements.md, not from the library: no JAX. The attention, operator and Taylor pieces are
those of :mod:`verification.oracles.reference` (the suite's one independent reference). Every
sum of exponentials is done in log space here too (``_logsumexp``), so the
references stay exact for logits of +-1e3 in float64.
"""

from __future__ import annotations

import numpy as np

from verification.oracles import reference


def f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _logsumexp(a: np.ndarray, axis: int = -1) -> np.ndarray:
    top = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.sum(np.exp(a - top), axis=axis))


def attention_parts(wq, wk, wv, demos, context, queries) -> dict[str, np.ndarray]:
    """Theorem 3.1 per query: :func:`verification.oracles.reference.attention_split` (the suite's one reference)."""
    context = np.zeros((0, np.shape(demos)[1])) if context is None else context
    return reference.attention_split(wq, wk, wv, demos, context, queries)


def apply_representer(coef, values, keys, log_scale, z) -> np.ndarray:
    """``exp(log_scale) sum_i c_i v_i exp(k_i . z)``: :func:`verification.oracles.reference.apply_representer`."""
    return reference.apply_representer(coef, values, keys, log_scale, z)


def hs_norm_terms(coef, values, keys, log_scale) -> tuple[np.ndarray, float]:
    """The terms ``c_i c_j <v_i, v_j> exp(k_i.k_j - shift)`` and ``shift + 2 log_scale`` (log of their scale)."""
    coef, values, keys = map(f64, (coef, values, keys))
    logk = keys @ keys.T
    shift = float(np.max(logk))
    terms = np.outer(coef, coef) * (values @ values.T) * np.exp(logk - shift)
    return terms, shift + 2.0 * float(log_scale)


taylor_kernel = reference.taylor_kernel
taylor_remainder = reference.taylor_remainder_bound
taylor_features = reference.taylor_features


def sq_dist(x, y) -> np.ndarray:
    """Pairwise squared Euclidean distances from explicit differences (no expansion)."""
    x, y = f64(x), f64(y)
    diff = x[:, None, :] - y[None, :, :]
    return np.sum(diff * diff, axis=-1)


def gram(kind: str, x, y, *, bandwidth: float = 1.0, wk=None) -> np.ndarray:
    x, y = f64(x), f64(y)
    if kind == "rbf":
        return np.exp(-sq_dist(x, y) / (2.0 * bandwidth**2))
    if kind == "laplace":  # Euclidean norm (scikit-learn's laplacian_kernel is L1)
        return np.exp(-np.sqrt(sq_dist(x, y)) / bandwidth)
    if kind == "linear":
        return x @ y.T
    if kind == "exp":
        return np.exp(x @ y.T)
    if kind == "product":
        wk = f64(wk)
        return (x @ y.T) * np.exp((x @ wk.T) @ (y @ wk.T).T)
    raise ValueError(kind)


def mmd2(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray, estimator: str) -> tuple[float, float]:
    """MMD^2 from Gram matrices, and the sum of the absolute values of its terms (its error scale)."""
    n, m = kxx.shape[0], kyy.shape[0]
    if estimator == "biased":
        a, b = kxx.sum() / n**2, kyy.sum() / m**2
        scale = np.abs(kxx).sum() / n**2 + np.abs(kyy).sum() / m**2
    else:
        off_x, off_y = ~np.eye(n, dtype=bool), ~np.eye(m, dtype=bool)
        a, b = kxx[off_x].sum() / (n * (n - 1)), kyy[off_y].sum() / (m * (m - 1))
        scale = np.abs(kxx[off_x]).sum() / (n * (n - 1)) + np.abs(kyy[off_y]).sum() / (m * (m - 1))
    c = 2.0 * kxy.sum() / (n * m)
    return float(a + b - c), float(scale + 2.0 * np.abs(kxy).sum() / (n * m))


def rel_err(actual, expected, scale=None) -> float:
    """max |actual - expected| / scale (scale defaults to max |expected|, at least the smallest normal)."""
    actual, expected = f64(actual), f64(expected)
    scale = np.max(np.abs(expected)) if scale is None else scale
    return float(np.max(np.abs(actual - expected)) / max(float(scale), np.finfo(np.float64).tiny))


def float32_attention_tol(wq, wk, wv, tokens, queries) -> float:
    """Absolute error bound for float32 softmax attention outputs (standard rounding analysis).

    A dot product of length L has error <= L * u * (the same product with absolute values),
    u = eps/2. The logits ``(W^Q x').(W^K x)`` are three nested products of lengths d, d, d_k,
    so their error is <= delta = (2d + d_k) u Lmax with Lmax the largest |W^Q||x'| . |W^K||x|.
    exp(l - max) then has relative error <= 2 delta + u, the normalisation adds n u, and the
    output is a convex combination of values v_j = W^V x_j (error d u |W^V||x_j|):
    |error| <= (4 delta + (n + d + 2) u) max_j ||W^V x_j||_inf (abs products), with a safety factor 2.
    """
    wq, wk, wv, tokens, queries = (np.abs(f64(a)) for a in (wq, wk, wv, tokens, queries))
    d, d_k, n = tokens.shape[1], wk.shape[0], tokens.shape[0]
    u = float(np.finfo(np.float32).eps) / 2
    lmax = float(np.max((queries @ wq.T) @ (tokens @ wk.T).T))
    delta = (2 * d + d_k) * u * lmax
    vmax = float(np.max(tokens @ wv.T))
    return 2.0 * (4 * delta + (n + d + 2) * u) * vmax
