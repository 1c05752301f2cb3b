"""The independent float64 reference every verdict of ``iclkd verify`` is compared with.

Written from docs/statements.md in plain NumPy (and SciPy where it helps), with no import of
``iclkd_jax`` (``tests/verification/test_reference.py`` enforces it): a bug planted in the
library cannot also be in the value it is judged against. Each function cites the
statement of docs/statements.md it implements.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

# ----------------------------------------------------------------------------------------
# Attention, its split, D' and eta, operators in representer form, feature maps
# (Theorem 3.1, the learning-rate lemma, the linear special case).
#
# Every function takes float64-convertible arrays and broadcasts over leading batch axes
# ("..."), so a check evaluates a whole batch of cases in one vectorised NumPy call. Sums of
# exponentials are taken in log space (shifted by the largest logit), as docs/statements.md requires.
# ----------------------------------------------------------------------------------------


def f64(a) -> np.ndarray:
    """``a`` as a float64 NumPy array (float32 inputs are converted exactly)."""
    return np.asarray(a, dtype=np.float64)


def _t(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, -1, -2)


def times_exp(x, log_factor) -> np.ndarray:
    """``x * exp(log_factor)`` (broadcast), without the spurious overflow of ``exp(log_factor)`` alone: where that
    product is not finite it is recomputed as ``sign(x) exp(log|x| + log_factor)``, which overflows only where the
    value itself exceeds float64 (e.g. ``exp(720) * 1e-5``)."""
    x, log_factor = np.asarray(x, np.float64), np.asarray(log_factor, np.float64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        direct = x * np.exp(log_factor)
        safe = np.sign(x) * np.exp(np.log(np.abs(x)) + log_factor)
    return np.where(np.isfinite(direct) | ~np.isfinite(x), direct, safe)


def vector_norm(x, axis: int = -1) -> np.ndarray:
    """``||x||_2`` along ``axis``, finite wherever the norm is: ``m sqrt(sum (x_i / m)^2)``, ``m = max |x_i|``.

    ``np.linalg.norm`` squares the entries first, so it overflows once an entry passes ``sqrt(float64 max)``
    (about ``1.3e154``) although the norm itself is in range (a prediction shift of ``3e165`` has a norm of
    ``3e165``). Scaling by the largest entry costs one division per entry: a relative error of a few eps.
    NaN and infinite entries give NaN and infinity, as they should.
    """
    top, root = _scaled_norm(x, axis)
    return top * root


def log_vector_norm(x, axis: int = -1) -> np.ndarray:
    """``log ||x||_2`` along ``axis`` (``-inf`` for a zero vector), finite even where the norm exceeds float64."""
    top, root = _scaled_norm(x, axis)
    with np.errstate(divide="ignore"):
        return np.log(top) + np.log(root)


def _scaled_norm(x, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """``(m, sqrt(sum (x_i / m)^2))`` with ``m = max |x_i|`` (``root`` in ``[1, sqrt(len)]`` where ``m > 0``)."""
    x = np.asarray(x, np.float64)
    top = np.max(np.abs(x), axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(top > 0, x / np.where(top > 0, top, 1.0), 1.0)
        scaled = np.where(np.isinf(top), np.where(np.isinf(x), 1.0, 0.0), scaled)
    return np.squeeze(top, axis), np.sqrt(np.sum(scaled * scaled, axis=axis))


def logsumexp(a, axis: int = -1, *, extended: bool = False) -> np.ndarray:
    """``log sum exp(a)`` along ``axis``, shifted by the maximum (finite for entries of +-1e3).

    ``extended=True`` sums in ``np.longdouble`` (80-bit on x86): a reference for ``log D'`` whose
    own round-off is far below the float64 library's.
    """
    a = np.asarray(a, np.longdouble if extended else np.float64)
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.squeeze(top, axis) + np.log(np.sum(np.exp(a - top), axis=axis))


def attention_logits(wq, wk, tokens, queries) -> np.ndarray:
    """``l_{aj} = (W^K x_j) . (W^Q x'_a)``, shape ``(..., q, n)`` (docs/statements.md#thm-3-1, Theorem 3.1: no 1/sqrt(d_k))."""
    keys = f64(tokens) @ _t(f64(wk))
    q = f64(queries) @ _t(f64(wq))
    return q @ _t(keys)


def softmax_attention(wq, wk, wv, tokens, queries) -> np.ndarray:
    """``Attn(x') = sum_j v_j exp(l_j) / sum_j exp(l_j)`` per query row, ``(..., q, d_v)``."""
    logits = attention_logits(wq, wk, tokens, queries)
    weights = np.exp(logits - logsumexp(logits)[..., None])
    return weights @ (f64(tokens) @ _t(f64(wv)))


def attention_split(wq, wk, wv, demos, context, queries) -> dict[str, np.ndarray]:
    """Theorem 3.1(a) and the learning-rate lemma, per query row (leading batch axes allowed).

    Returns a dict with
      ``w0_out``: ``W_0 phi(q) = sum_{i<=N} v_i exp(l_i) / D'``, ``(..., q, d_v)``;
      ``dw_out``: ``ΔW phi(q) = sum_{j<=M} v'_j exp(l'_j) / D'``;
      ``output``: their sum, the attention output;
      ``log_partition``: ``log D' = logsumexp`` over all ``N + M`` logits, ``(..., q)``;
      ``log_eta``: ``log(N / (2 D'))``; ``log_eta_context``: ``log(M / (2 D'))`` (``-inf`` when M = 0);
      ``entropy``: ``-sum_j p_j log p_j`` of the attention distribution (nats);
      ``logits``: ``(..., q, N + M)``.
    """
    demos, context = f64(demos), f64(context)
    n, m = demos.shape[-2], context.shape[-2]
    tokens = np.concatenate([demos, context], axis=-2)
    logits = attention_logits(wq, wk, tokens, queries)
    log_d = logsumexp(logits)
    log_p = logits - log_d[..., None]
    p = np.exp(log_p)
    values = tokens @ _t(f64(wv))
    w0_out = p[..., :n] @ values[..., :n, :]
    dw_out = p[..., n:] @ values[..., n:, :]
    log_eta_q = np.log(m / 2.0) - log_d if m else np.full_like(log_d, -np.inf)
    return {"w0_out": w0_out, "dw_out": dw_out, "output": w0_out + dw_out, "log_partition": log_d,
            "log_eta": np.log(n / 2.0) - log_d, "log_eta_context": log_eta_q,
            "entropy": -np.sum(p * log_p, axis=-1), "logits": logits}


def attention_entropy(logits) -> np.ndarray:
    """Entropy (nats) of ``softmax(logits)`` along the last axis, in ``np.longdouble``."""
    logits = np.asarray(logits, np.longdouble)
    log_p = logits - logsumexp(logits, extended=True)[..., None]
    return -np.sum(np.exp(log_p) * log_p, axis=-1)


def apply_representer(coef, values, keys, log_scale, z) -> np.ndarray:
    """``W phi(z) = exp(log_scale) sum_i c_i v_i exp(k_i . z)`` (docs/statements.md#operators).

    Shapes ``coef (..., n)``, ``values (..., n, d_v)``, ``keys (..., n, d_k)``, ``log_scale (...)``,
    ``z (..., q, d_k)``; returns ``(..., q, d_v)``. Each row is shifted by its largest logit.
    """
    logits = f64(z) @ _t(f64(keys))                                   # (..., q, n)
    top = np.max(logits, axis=-1, keepdims=True)
    scaled = (np.exp(logits - top) * f64(coef)[..., None, :]) @ f64(values)
    return times_exp(scaled, top + f64(log_scale)[..., None, None])


def hs_norm_squared(coef, values, keys, log_scale) -> tuple[np.ndarray, np.ndarray]:
    """``||W||_HS^2 = sum_ij c_i c_j <v_i, v_j> exp(k_i . k_j)`` by an explicit double sum.

    Every term ``t_ij`` is formed on its own (broadcast over ``i`` and ``j``, the inner products
    as elementwise sums, never a matrix product), with the largest ``k_i . k_j`` factored out.
    Returns ``(log ||W||^2, condition)``: ``condition = sum|t_ij| / |sum t_ij|`` (the relative error
    of the sum is about ``condition * eps``); ``log`` is ``-inf`` when the sum is not positive.
    Leading batch axes allowed.
    """
    coef, values, keys = f64(coef), f64(values), f64(keys)
    exponents = np.sum(keys[..., :, None, :] * keys[..., None, :, :], axis=-1)          # (..., n, n)
    shift = np.max(exponents, axis=(-1, -2))
    inner = np.sum(values[..., :, None, :] * values[..., None, :, :], axis=-1)
    terms = coef[..., :, None] * coef[..., None, :] * inner * np.exp(exponents - shift[..., None, None])
    total = np.sum(terms, axis=(-1, -2))
    absolute = np.sum(np.abs(terms), axis=(-1, -2))
    with np.errstate(divide="ignore", invalid="ignore"):
        condition = np.where(total != 0, absolute / np.abs(total), np.where(absolute == 0, 1.0, np.inf))
        log_value = np.where(total > 0, np.log(np.where(total > 0, total, 1.0)), -np.inf)
    return log_value + shift + 2.0 * f64(log_scale), condition


def representer_matrix(coef, values, key_features, log_scale) -> np.ndarray:
    """With an explicit map: ``W = exp(log_scale) sum_i c_i v_i phi(k_i)^T``, ``(..., d_v, m)``.

    ``key_features`` are ``phi(k_i)``, ``(..., n, m)`` (from one of the feature maps below).
    """
    weighted = f64(coef)[..., :, None] * f64(values)                    # (..., n, d_v)
    return times_exp(_t(weighted) @ f64(key_features), f64(log_scale)[..., None, None])


# --- explicit feature maps of kappa(u, z) = exp(u . z) (docs/statements.md#feature-maps, "Feature maps of kappa") ---

def taylor_features(u, order: int) -> np.ndarray:
    """``phi(u) = (u^{⊗n} / sqrt(n!))_{n=0..p}`` by explicit Kronecker products (row-major blocks)."""
    u = f64(u)
    block = np.ones(u.shape[:-1] + (1,))
    blocks = [block]
    for n in range(1, order + 1):
        block = (block[..., :, None] * u[..., None, :]).reshape(u.shape[:-1] + (-1,))
        blocks.append(block / math.sqrt(math.factorial(n)))
    return np.concatenate(blocks, axis=-1)


def taylor_kernel(u, z, order: int) -> np.ndarray:
    """``sum_{n<=p} (u.z)^n / n!`` for the rows of ``u`` against the rows of ``z``, ``(..., nu, nz)``."""
    s = f64(u) @ _t(f64(z))
    return sum(s ** n / math.factorial(n) for n in range(order + 1))


def taylor_remainder_bound(t, order: int) -> np.ndarray:
    """Lagrange bound on ``|exp(t) - sum_{n<=p} t^n / n!|``: ``exp(max(t, 0)) |t|^{p+1} / (p+1)!``."""
    t = f64(t)
    return np.exp(np.maximum(t, 0.0)) * np.abs(t) ** (order + 1) / math.factorial(order + 1)


def positive_random_features(u, omega) -> np.ndarray:
    """FAVOR+: ``phi_m(u) = m^{-1/2} exp(Omega u - |u|^2 / 2)`` for the given draw ``omega (m, d_k)``."""
    u, omega = f64(u), f64(omega)
    m = omega.shape[-2]
    return np.exp(u @ _t(omega) - 0.5 * np.sum(u * u, axis=-1, keepdims=True)) / math.sqrt(m)


def trig_random_features(u, omega, offset) -> np.ndarray:
    """``phi(u) = e^{|u|^2/2} sqrt(2/m) cos(Omega u + b)`` for the given ``omega (m, d_k)``, ``offset (m,)``."""
    u, omega, offset = f64(u), f64(omega), f64(offset)
    m = omega.shape[-2]
    return (np.exp(0.5 * np.sum(u * u, axis=-1, keepdims=True)) * math.sqrt(2.0 / m)
            * np.cos(u @ _t(omega) + offset[..., None, :]))


def positive_feature_relative_variance(u, z) -> np.ndarray:
    """Per-feature variance of ``phi(u) . phi(z)`` over ``exp(u.z)^2`` (positive, iid): ``exp(|u+z|^2) - 1``."""
    return np.expm1(np.sum((f64(u) + f64(z)) ** 2, axis=-1))


def trig_feature_relative_variance(u, z) -> np.ndarray:
    """Per-feature relative variance of the trigonometric map: ``e^{|δ|^2} - 1 + e^{-|δ|^2}/2``, ``δ = u - z``."""
    d2 = np.sum((f64(u) - f64(z)) ** 2, axis=-1)
    return np.expm1(d2) + 0.5 * np.exp(-d2)


# --- one KD step with an explicit map (Theorem 3.1(b)) ---

def kd_loss(w, values, key_features) -> np.ndarray:
    """``L(W) = (1/N) sum_i ||v_i - W phi(k_i)||^2`` with ``w (..., d_v, m)``, ``values (..., N, d_v)``."""
    residual = f64(values) - f64(key_features) @ _t(f64(w))
    # the largest |entry| factored out before squaring: no overflow unless L itself exceeds float64
    with np.errstate(divide="ignore"):
        log_scale = np.log(np.max(np.abs(residual), axis=(-1, -2)))
    log_scale = np.where(np.isfinite(log_scale), log_scale, 0.0)
    scaled = residual * np.exp(-log_scale)[..., None, None]
    with np.errstate(over="ignore"):
        return np.exp(log_mean_square(scaled, np.broadcast_to(log_scale[..., None], scaled.shape[:-1])))


def kd_gradient_at_zero(values, key_features) -> np.ndarray:
    """``grad L(0) = -(2/N) sum_i v_i phi(k_i)^T``, ``(..., d_v, m)`` (docs/statements.md#thm-3-1b, Theorem 3.1(b))."""
    values = f64(values)
    return -(2.0 / values.shape[-2]) * (_t(values) @ f64(key_features))


# --- the linear special case (Dai et al. 2022; von Oswald et al. 2023) ---

def linear_attention(wq, wk, wv, tokens, queries) -> np.ndarray:
    """``sum_j v_j (k_j . q)`` per query row (no softmax, no normalisation), ``(..., q, d_v)``."""
    return attention_logits(wq, wk, tokens, queries) @ (f64(tokens) @ _t(f64(wv)))


def linear_dual_weights(wk, wv, demos, context) -> tuple[np.ndarray, np.ndarray]:
    """Dai et al.'s dual form: ``W_0 = sum_i v_i k_i^T``, ``ΔW = sum_j v'_j k'_j^T``, each ``(..., d_v, d_k)``."""
    def outer_sum(tokens):
        tokens = f64(tokens)
        return np.einsum("...nv,...nk->...vk", tokens @ _t(f64(wv)), tokens @ _t(f64(wk)))
    return outer_sum(demos), outer_sum(context)


def gd_step_prediction(xs, ys, x_query, learning_rate, w_init) -> np.ndarray:
    """``W_1 x_q`` with ``W_1 = W - eta (1/N) sum_i (W x_i - y_i) x_i^T`` (one GD step on ``1/(2N) sum ||Wx - y||^2``)."""
    xs, ys, x_query, w_init = f64(xs), f64(ys), f64(x_query), f64(w_init)
    n = xs.shape[-2]
    residuals = xs @ _t(w_init) - ys                                          # (..., N, d_y)
    gradient = np.einsum("...ny,...nx->...yx", residuals, xs) / n
    w1 = w_init - f64(learning_rate)[..., None, None] * gradient
    return x_query @ _t(w1)


def von_oswald_layer(xs, ys, x_query, learning_rate, w_init) -> np.ndarray:
    """von Oswald et al.'s LSA layer applied to the query tokens ``(x_q, -W_init x_q)``.

    ``e' = e + P sum_i (W^V e_i)((W^K e_i) . (W^Q e))`` with ``e_i = (x_i, y_i)``,
    ``W^K = W^Q = [[I, 0], [0, 0]]``, ``W^V = [[0, 0], [W_init, -I]]``, ``P = (eta/N) I``; built here
    block by block. Returns the updated query tokens ``(..., q, d_x + d_y)``; their last ``d_y``
    coordinates are minus the prediction after one GD step.
    """
    xs, ys, x_query, w_init = f64(xs), f64(ys), f64(x_query), f64(w_init)
    n, dx, dy = xs.shape[-2], xs.shape[-1], ys.shape[-1]
    d = dx + dy
    batch = w_init.shape[:-2]
    select = np.zeros(batch + (d, d))
    select[..., :dx, :dx] = np.eye(dx)
    wv = np.zeros(batch + (d, d))
    wv[..., dx:, :dx] = w_init
    wv[..., dx:, dx:] = -np.eye(dy)
    tokens = np.concatenate([xs, ys], axis=-1)
    queries = np.concatenate([x_query, -x_query @ _t(w_init)], axis=-1)
    update = linear_attention(select, select, wv, tokens, queries)
    return queries + (f64(learning_rate) / n)[..., None, None] * update


# ----------------------------------------------------------------------------------------
# Kernels and MMD^2 (V and U statistics), operator norms, the supremum gap of Theorem 3.2,
# the Rademacher closed form (Theorems 3.2, 4.1, 4.2, Conjecture 4.1).
# ----------------------------------------------------------------------------------------
#
# Conventions: float64 NumPy; leading axes of every array argument are batch axes (the checks
# evaluate thousands of cases at once); quantities that overflow are returned in log space as
# ``(sign, log|value|)`` with ``log|0| = -inf``. Exponential double sums factor out their largest
# log-term first (docs/statements.md#hazards, numerical hazards).

KERNEL_KINDS = ("rbf", "laplace", "linear", "exp", "product")


def _f64(*arrays):
    return tuple(np.asarray(a, np.float64) for a in arrays)


def pairwise_squared_distances(x, y):
    """``||x_i - y_j||^2`` from explicit differences (exact for equal points): ``(..., n, m)``."""
    x, y = _f64(x, y)
    diff = x[..., :, None, :] - y[..., None, :, :]
    return np.einsum("...ijd,...ijd->...ij", diff, diff)


def log_gram(kind: str, x, y, *, bandwidth=None, wk=None):
    """``(sign, log|k(x_i, y_j)|)`` for a kernel of the library (docs/statements.md#conj-4-1, Theorem 4.1 and Conjecture 4.1').

    * ``rbf``: ``exp(-||x - y||^2 / (2 bandwidth^2))``;
    * ``laplace``: ``exp(-||x - y|| / bandwidth)``;
    * ``linear``: ``x . y``;
    * ``exp``: ``exp(x . y)`` (the softmax kernel kappa);
    * ``product``: ``(x . y) exp((W^K x) . (W^K y))`` (Theorem 4.1's kernel of ``x ⊗ phi(W^K x)``).

    ``bandwidth`` may carry batch axes (broadcast against ``(..., 1, 1)``); ``wk`` is ``(..., d_k, d)``.
    """
    x, y = _f64(x, y)
    if kind in ("rbf", "laplace"):
        bw = np.asarray(bandwidth, np.float64)[..., None, None]
        d2 = pairwise_squared_distances(x, y)
        log_abs = -d2 / (2.0 * bw**2) if kind == "rbf" else -np.sqrt(d2) / bw
        return np.ones_like(log_abs), log_abs
    linear = np.einsum("...id,...jd->...ij", x, y)
    if kind == "exp":
        return np.ones_like(linear), linear
    with np.errstate(divide="ignore"):
        log_linear = np.log(np.abs(linear))
    if kind == "linear":
        return np.sign(linear), log_linear
    if kind == "product":
        wk = np.asarray(wk, np.float64)
        kx = np.einsum("...kd,...id->...ik", wk, x)
        ky = np.einsum("...kd,...jd->...jk", wk, y)
        return np.sign(linear), log_linear + np.einsum("...ik,...jk->...ij", kx, ky)
    raise ValueError(f"kind must be one of {KERNEL_KINDS}, got {kind!r}")


def gram(kind: str, x, y, **params):
    """``k(x_i, y_j)`` (may overflow for the exponential kernels: use :func:`log_gram` there)."""
    sign, log_abs = log_gram(kind, x, y, **params)
    return sign * np.exp(log_abs)


class LogSum(NamedTuple):
    """A double sum in log space: ``sign * exp(log_abs)``; ``condition = sum|terms| / |sum|`` (the relative
    round-off is about ``condition * eps``; inf when the sum cancels to 0); ``log_terms = log sum|terms|``
    (the scale of its absolute round-off)."""

    sign: np.ndarray
    log_abs: np.ndarray
    condition: np.ndarray
    log_terms: np.ndarray


def log_weighted_sum(weights, sign, log_abs) -> LogSum:
    """``sum_ij w_ij s_ij exp(l_ij)`` over the last two axes, the largest ``l_ij`` with a nonzero weight
    factored out first."""
    weights, sign, log_abs = _f64(weights, sign, log_abs)
    live = (weights != 0) & (sign != 0) & np.isfinite(log_abs)
    masked = np.where(live, log_abs, -np.inf)
    shift = np.max(masked, axis=(-2, -1), keepdims=True)
    shift = np.where(np.isfinite(shift), shift, 0.0)
    terms = np.where(live, weights * sign * np.exp(np.where(live, log_abs, 0.0) - shift), 0.0)
    total = terms.sum(axis=(-2, -1))
    absolute = np.abs(terms).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_total = np.log(np.abs(total)) + shift[..., 0, 0]
        condition = np.where(total != 0, absolute / np.abs(total), np.where(absolute == 0, 1.0, np.inf))
        log_terms = np.log(absolute) + shift[..., 0, 0]
    return LogSum(np.sign(total), log_total, condition, log_terms)


def mmd2_weights(n: int, m: int, estimator: str = "biased") -> np.ndarray:
    """The ``(n+m, n+m)`` weights ``w_ij`` with ``MMD^2 = sum_ij w_ij k(z_i, z_j)``, ``z = [x; y]``.

    Biased (V-statistic): ``1/n^2`` within x, ``1/m^2`` within y, ``-1/(n m)`` across (each ordered
    pair, so ``-2/(n m) sum_ij k(x_i, y_j)`` in all). Unbiased (U-statistic): ``1/(n(n-1))`` and
    ``1/(m(m-1))`` off the diagonal, 0 on it (docs/statements.md#thm-4-1, Theorem 4.1: the MMD is the biased one).
    """
    if estimator not in ("biased", "unbiased"):
        raise ValueError(f"estimator must be 'biased' or 'unbiased', got {estimator!r}")
    w = np.empty((n + m, n + m))
    if estimator == "biased":
        w[:n, :n], w[n:, n:] = 1.0 / n**2, 1.0 / m**2
    else:
        w[:n, :n], w[n:, n:] = 1.0 / (n * (n - 1)), 1.0 / (m * (m - 1))
        np.fill_diagonal(w, 0.0)
    w[:n, n:] = w[n:, :n] = -1.0 / (n * m)
    return w


def log_mmd2(x, y, kind: str, *, estimator: str = "biased", **params) -> LogSum:
    """``MMD_k^2(x, y)`` as a :class:`LogSum`: the double sum over the pooled sample."""
    x, y = _f64(x, y)
    z = np.concatenate([x, y], axis=-2)
    sign, log_abs = log_gram(kind, z, z, **params)
    return log_weighted_sum(mmd2_weights(x.shape[-2], y.shape[-2], estimator), sign, log_abs)


def mmd2(x, y, kind: str, *, estimator: str = "biased", **params):
    """``MMD_k^2(x, y)`` (V or U statistic) for a kernel of :func:`log_gram`; may overflow (see :func:`log_mmd2`)."""
    total = log_mmd2(x, y, kind, estimator=estimator, **params)
    return total.sign * np.exp(total.log_abs)


def median_bandwidth(x, y=None) -> float:
    """The median heuristic: the median of ``||z_i - z_j||`` over distinct pairs ``i < j`` of the pooled sample."""
    z = np.asarray(x, np.float64) if y is None else np.concatenate(_f64(x, y))
    d = np.sqrt(pairwise_squared_distances(z, z))
    return float(np.median(d[np.triu_indices(z.shape[0], k=1)]))


def operator_norm(matrix):
    """``||A||_op``: the largest singular value (SVD), batched over leading axes."""
    return np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)[..., 0]


def smallest_singular_value(matrix):
    return np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)[..., -1]


def log_hs_norm2(coef, values, keys, log_scale) -> LogSum:
    """``||W||_HS^2`` of ``W = exp(log_scale) sum_i c_i v_i ⊗ phi(k_i)`` as a :class:`LogSum`.

    The explicit double sum ``sum_ij c_i c_j <v_i, v_j> exp(k_i . k_j)`` (docs/statements.md#operators, "Weights as
    operators"), the scale ``exp(2 log_scale)`` included in ``log_abs`` and ``log_terms``.
    """
    coef, values, keys, log_scale = _f64(coef, values, keys, log_scale)
    inner = np.einsum("...ia,...ja->...ij", values, values)
    logits = np.einsum("...ik,...jk->...ij", keys, keys)
    with np.errstate(divide="ignore"):
        total = log_weighted_sum(coef[..., :, None] * coef[..., None, :], np.sign(inner),
                                 np.log(np.abs(inner)) + logits)
    return LogSum(total.sign, total.log_abs + 2.0 * log_scale, total.condition, total.log_terms + 2.0 * log_scale)


def weight_difference(wk, wv, target, prompt, log_eta):
    """``ΔW = W̄(𝒬) - W̄(𝒟)``, ``W̄(P) = 2 eta E_P[W^V x ⊗ phi(W^K x)]`` on empirical measures (Theorem 4.1).

    Returns ``(coef, values, keys, log_scale)``: rows ``[prompt; target]``, ``coef = [1/n]*n + [-1/m]*m``,
    ``log_scale = log 2 + log eta``.
    """
    wk, wv, target, prompt, log_eta = _f64(wk, wv, target, prompt, log_eta)
    n, m = prompt.shape[-2], target.shape[-2]
    tokens = np.concatenate([prompt, target], axis=-2)
    coef = np.broadcast_to(np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)]), tokens.shape[:-1])
    return (coef, np.einsum("...ad,...id->...ia", wv, tokens), np.einsum("...kd,...id->...ik", wk, tokens),
            np.log(2.0) + log_eta)


def distilled_prediction(wk, wv, tokens, log_eta, queries):
    """``f_S(x; W̄(P)) = (2 eta / N) sum_i W^V x_i exp((W^K x_i) . (W^K x))`` at every query row (Theorem 4.2).

    Returns ``(..., q, d_v)``; the exponent is shifted per query by its largest logit.
    """
    wk, wv, tokens, log_eta, queries = _f64(wk, wv, tokens, log_eta, queries)
    keys = np.einsum("...kd,...id->...ik", wk, tokens)
    qkeys = np.einsum("...kd,...qd->...qk", wk, queries)
    logits = np.einsum("...qk,...ik->...qi", qkeys, keys)
    shift = logits.max(axis=-1, keepdims=True)
    values = np.einsum("...ad,...id->...ia", wv, tokens)
    summed = np.einsum("...qi,...ia->...qa", np.exp(logits - shift), values)
    scale = np.log(2.0) + np.asarray(log_eta)[..., None, None] - np.log(tokens.shape[-2])
    return times_exp(summed, shift + scale)


def log_mean_square(scaled, log_scale) -> np.ndarray:
    """``log mean_r ||exp(log_scale_r) scaled_r||^2`` over the rows ``r`` of ``scaled (..., R, a)``, never overflowing.

    ``log_scale (..., R)`` is factored out of each row (so the rows can be chosen with entries of size <= 1);
    ``-inf`` for a zero mean.
    """
    scaled, log_scale = _f64(scaled, log_scale)
    with np.errstate(divide="ignore"):
        log_rows = np.log(np.sum(scaled * scaled, axis=-1)) + 2.0 * log_scale
    return logsumexp(log_rows) - math.log(scaled.shape[-2])


def log_kd_risk(wk, wv, tokens, log_eta, reference):
    """``log L(W̄(P))``, ``L = mean_x ||W^V x - f_S(x; W̄(P))||^2`` over the rows of ``reference`` (Theorem 4.2).

    In log space: ``f_S(x) = exp(s_x) g_x`` with ``s_x = log(2 eta / N) + max_i (W^K x_i).(W^K x)`` and
    ``g_x = sum_i W^V x_i exp((W^K x_i).(W^K x) - max)``; each residual row is divided by
    ``exp(l_x)``, ``l_x = max(log max|W^V x|, s_x + log max|g_x|)`` before it is squared (its entries are then at most
    2 in size), and the mean over rows is a log-sum-exp: finite wherever ``log L`` is, even when ``L`` itself is
    beyond float64 (a squared residual of 1e200 is 1e400).
    """
    wk, wv, tokens, log_eta, reference = _f64(wk, wv, tokens, log_eta, reference)
    keys = np.einsum("...kd,...id->...ik", wk, tokens)
    rkeys = np.einsum("...kd,...qd->...qk", wk, reference)
    logits = np.einsum("...qk,...ik->...qi", rkeys, keys)
    shift = logits.max(axis=-1)
    summed = np.einsum("...qi,...ia->...qa", np.exp(logits - shift[..., None]),
                       np.einsum("...ad,...id->...ia", wv, tokens))
    log_pred = shift + (math.log(2.0) - math.log(tokens.shape[-2]) + log_eta[..., None])
    teacher = np.einsum("...ad,...qd->...qa", wv, reference)
    with np.errstate(divide="ignore"):
        row_scale = np.maximum(np.log(np.max(np.abs(teacher), axis=-1)),
                               log_pred + np.log(np.max(np.abs(summed), axis=-1)))
    row_scale = np.where(np.isfinite(row_scale), row_scale, 0.0)  # both zero: the residual is 0
    scaled = teacher * np.exp(-row_scale)[..., None] - summed * np.exp(log_pred - row_scale)[..., None]
    return log_mean_square(scaled, row_scale)


def kd_risk(wk, wv, tokens, log_eta, reference):
    """``L(W̄(P))`` (Theorem 4.2): ``exp`` of :func:`log_kd_risk`, so ``inf`` only where ``L`` exceeds float64."""
    with np.errstate(over="ignore"):
        return np.exp(log_kd_risk(wk, wv, tokens, log_eta, reference))


def ball_maximum(a, b, radius, *, iterations: int = 200):
    """``max_{||w|| <= R} w^T a w - 2 b^T w`` for symmetric ``a``: the trust-region subproblem (Theorem 3.2).

    Method (not the library's primal Newton on the secular equation): the Lagrangian dual, exact for
    this problem (the S-lemma), ``max = min_{mu >= max(lambda_max, 0)} g(mu)`` with
    ``g(mu) = mu R^2 + sum_i beta_i^2 / (mu - lambda_i)``, ``a = Q diag(lambda) Q^T``, ``beta = Q^T b``
    (dense ``numpy.linalg.eigh``). ``g`` is convex; its minimiser is found by bisection on the sign of
    ``g'(mu) = R^2 - sum_i beta_i^2 / (mu - lambda_i)^2``, bracketed by ``[max(lambda_max, 0),
    max(lambda_max, 0) + ||b|| / R]``. At the minimiser ``g`` is flat, so an error of ``mu`` enters the
    value only to second order. The hard case (``beta`` = 0 on the top eigenspace) is the minimiser at
    the left end, where the top terms vanish. Returns ``(value, mu)``, batched over leading axes.
    """
    a, b, radius = _f64(a, b, radius)
    lam, q = np.linalg.eigh(0.5 * (a + np.swapaxes(a, -1, -2)))
    beta2 = np.einsum("...ji,...j->...i", q, b) ** 2
    lam_max = lam[..., -1]
    lo = np.maximum(lam_max, 0.0)
    hi = lo + np.sqrt(np.sum(b * b, axis=-1)) / radius + np.finfo(np.float64).tiny

    def terms(mu, power):
        gap = mu[..., None] - lam
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(beta2 > 0, beta2 / gap**power, 0.0)
        return np.sum(t, axis=-1)

    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        increasing = radius**2 - terms(mid, 2) >= 0
        hi = np.where(increasing, mid, hi)
        lo = np.where(increasing, lo, mid)
    mu = hi  # g'(hi) >= 0 throughout; hi -> the minimiser from the right
    return mu * radius**2 + terms(mu, 1), mu


def kd_moments(features, targets, weights):
    """``(E phi phi^T, E t phi^T, E||t||^2)`` under row weights summing to 1 (Theorem 3.2's quadratic form)."""
    features, targets, weights = _f64(features, targets, weights)
    weighted = weights[..., :, None] * features
    return (np.swapaxes(weighted, -1, -2) @ features, np.swapaxes(targets, -1, -2) @ weighted,
            np.einsum("...n,...na,...na->...", weights, targets, targets))


def sup_gap(population_moments, sample_moments, ball):
    """``sup_{||W||_HS <= B} L(W) - L_N(W)`` for ``L - L_N = dc - 2<W, dM> + <W^T W, dS>`` (Theorem 3.2).

    Over ``vec W`` (rows of ``W (d_v, m)``) the form is ``I_{d_v} ⊗ dS`` and ``vec dM``: solved densely by
    :func:`ball_maximum` on the full ``d_v m``-dimensional problem.
    """
    (ps, pm, pc), (es, em, ec) = population_moments, sample_moments
    d_s, d_m, d_c = _f64(np.asarray(ps) - np.asarray(es), np.asarray(pm) - np.asarray(em),
                         np.asarray(pc) - np.asarray(ec))
    dv = d_m.shape[-2]
    a = np.einsum("ab,...ij->...aibj", np.eye(dv), d_s).reshape(d_s.shape[:-2] + (dv * d_s.shape[-1],) * 2)
    value, _ = ball_maximum(a, d_m.reshape(d_m.shape[:-2] + (-1,)), ball)
    return d_c + value


def sup_norm_on_ball(matrix, center, radius):
    """``sup_{||x - c|| <= r} ||A x||``: ``||A c||^2 + max_{||y|| <= r} y^T A^T A y + 2 c^T A^T A y`` (Theorem 3.2's T, C)."""
    matrix, center = _f64(matrix, center)
    gram_ = matrix.T @ matrix
    value, _ = ball_maximum(gram_, -gram_ @ center, radius)
    return float(np.sqrt(max(float(center @ gram_ @ center + value), 0.0)))


def rademacher_closed_form(gram_matrix, radius):
    """``(B/N) sqrt(tr K)``: the Jensen bound on ``R_N = (B/N) E_sigma sqrt(sigma^T K sigma)`` (Theorem 3.2)."""
    k = np.asarray(gram_matrix, np.float64)
    return radius / k.shape[-1] * np.sqrt(np.maximum(np.trace(k, axis1=-2, axis2=-1), 0.0))


def rademacher_moments(gram_matrix, radius, *, kurtosis: bool = False) -> tuple[float, ...]:
    """Mean and standard deviation of ``(B/N) sqrt(sigma^T K sigma)`` over all ``2^N`` sign vectors (the bits of
    0..2^N-1): ``R_N`` exactly, and the spread that sets a Monte Carlo estimate's standard error; with
    ``kurtosis=True`` also ``E(v - mean)^4 / std^4`` (the spread of a sample standard deviation)."""
    k = np.asarray(gram_matrix, np.float64)
    n = k.shape[-1]
    if n > 20:
        raise ValueError(f"rademacher_exact enumerates 2^N sign vectors; N = {n} > 20")
    signs = 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1) - 1.0
    values = radius / n * np.sqrt(np.maximum(np.einsum("si,ij,sj->s", signs, k, signs), 0.0))
    mean, std = float(np.mean(values)), float(np.std(values))
    if not kurtosis:
        return mean, std
    return mean, std, float(np.mean((values - mean) ** 4) / std**4) if std > 0 else 1.0


def rademacher_exact(gram_matrix, radius):
    """``R_N = (B/N) E_sigma sqrt(sigma^T K sigma)`` over all ``2^N`` sign vectors."""
    return rademacher_moments(gram_matrix, radius)[0]


# ----------------------------------------------------------------------------------------
# Real models (docs/statements.md#real-models, "Real models"): a llama attention layer with rotary positions,
# grouped-query heads and a causal mask; Theorem 4.1's position-aware product kernel.
# ----------------------------------------------------------------------------------------
def rotary(x: np.ndarray, positions: np.ndarray, base: float) -> np.ndarray:
    """``R(p) x`` for rows ``x (n, d_head)``: the adjacent pairs ``(2i, 2i+1)`` as complex numbers times ``e^{i p θ_i}``.

    ``θ_i = base^(-2i / d_head)``: the GGUF layout of llama's rotary embedding (docs/statements.md#real-models,
    "Real models": rotations of 2x2 blocks; which pairs is a convention of the weight layout).
    """
    x = np.asarray(x, np.float64)
    half = x.shape[-1] // 2
    theta = base ** (-2.0 * np.arange(half) / x.shape[-1])
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * np.exp(1j * np.outer(np.asarray(positions, np.float64), theta))
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


def llama_head_attention(x: np.ndarray, wq: np.ndarray, wk: np.ndarray, wv: np.ndarray, *, heads: int,
                         kv_heads: int, base: float) -> np.ndarray:
    """Each query head's causal attention output of a llama layer, ``(heads, n, d_head)``, float64.

    ``x (n, d)`` are the layer's normalised tokens; ``wq (heads d_head, d)``, ``wk, wv (kv_heads d_head, d)``
    in ``(out, in)`` layout. Head ``h`` reads key/value head ``h // (heads / kv_heads)``; its logits are
    ``(R(t) W^Q_h x_t) . (R(j) W^K_g x_j) / sqrt(d_head)`` for ``j <= t`` (docs/statements.md#real-models, "Real models").
    """
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    d_head = wq.shape[0] // heads
    group = heads // kv_heads
    positions = np.arange(n)
    out = np.empty((heads, n, d_head))
    for h in range(heads):
        g = h // group
        q = rotary(x @ np.asarray(wq, np.float64)[h * d_head:(h + 1) * d_head].T, positions, base)
        k = rotary(x @ np.asarray(wk, np.float64)[g * d_head:(g + 1) * d_head].T, positions, base)
        v = x @ np.asarray(wv, np.float64)[g * d_head:(g + 1) * d_head].T
        for t in range(n):
            logits = k[:t + 1] @ q[t] / np.sqrt(d_head)
            weights = np.exp(logits - logits.max())
            out[h, t] = weights @ v[:t + 1] / weights.sum()
    return out


def position_product_mmd2(x: np.ndarray, p: np.ndarray, y: np.ndarray, q: np.ndarray, wk: np.ndarray,
                          base: float) -> tuple[float, float]:
    """Biased ``MMD^2`` of samples ``(x, p)`` and ``(y, q)`` under ``k((x,p),(x',p')) = (x.x') exp((R(p)W^K x).(R(p')W^K x'))``.

    docs/statements.md#thm-4-1, "Real models" (Theorem 4.1 with tokens replaced by (token, position) pairs);
    ``wk (d_k, d)`` includes any folded temperature. Returns ``(MMD^2, condition)``.
    """
    tokens = np.concatenate([x, y]).astype(np.float64)
    keys = rotary(tokens @ np.asarray(wk, np.float64).T, np.concatenate([p, q]), base)
    coef = np.concatenate([np.full(len(x), -1.0 / len(x)), np.full(len(y), 1.0 / len(y))])
    # MMD^2 = ||mean embedding difference of x ⊗ phi(k)||^2: the HS double sum with values = the tokens
    total = log_hs_norm2(coef, tokens, keys, 0.0)
    return float(total.sign * np.exp(total.log_abs)), float(total.condition)
