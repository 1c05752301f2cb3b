"""The independent float64 reference every verdict of ``iclkd verify`` is compared with.

Written from THEOREMS.md in plain NumPy (and SciPy where it helps), with no import of
``iclkd_jax`` (``tests/verification/test_reference.py`` enforces it): a bug planted in the
library cannot also be in the value it is judged against. Each function cites the
statement of THEOREMS.md it implements.
"""

from __future__ import annotations

import math

import numpy as np

# ----------------------------------------------------------------------------------------
# Attention, its split, D' and eta, operators in representer form, feature maps
# (Theorem 3.1, the learning-rate lemma, the linear special case).
# ----------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------
# Kernels and MMD^2 (V and U statistics), operator norms, the supremum gap of Theorem 3.2,
# the Rademacher closed form (Theorems 3.2, 4.1, 4.2, Conjecture 4.1).
# ----------------------------------------------------------------------------------------
#
# Conventions: float64 NumPy; leading axes of every array argument are batch axes (the checks
# evaluate thousands of cases at once); quantities that overflow are returned in log space as
# ``(sign, log|value|)`` with ``log|0| = -inf``. Exponential double sums factor out their largest
# log-term first (THEOREMS.md, numerical hazards).

KERNEL_KINDS = ("rbf", "laplace", "linear", "exp", "product")


def _f64(*arrays):
    return tuple(np.asarray(a, np.float64) for a in arrays)


def pairwise_squared_distances(x, y):
    """``||x_i - y_j||^2`` from explicit differences (exact for equal points): ``(..., n, m)``."""
    x, y = _f64(x, y)
    diff = x[..., :, None, :] - y[..., None, :, :]
    return np.einsum("...ijd,...ijd->...ij", diff, diff)


def log_gram(kind: str, x, y, *, bandwidth=None, wk=None):
    """``(sign, log|k(x_i, y_j)|)`` for a kernel of the library (THEOREMS.md, Theorem 4.1 and Conjecture 4.1').

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


def log_weighted_sum(weights, sign, log_abs):
    """``sum_ij w_ij s_ij exp(l_ij)`` as ``(sign, log|.|, condition)`` over the last two axes.

    The largest ``l_ij`` with a nonzero weight is factored out first; ``condition =
    sum|terms| / |sum terms|`` (the relative round-off is about ``condition * eps``; inf when the
    sum cancels to 0).
    """
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
    return np.sign(total), log_total, condition


def mmd2_weights(n: int, m: int, estimator: str = "biased") -> np.ndarray:
    """The ``(n+m, n+m)`` weights ``w_ij`` with ``MMD^2 = sum_ij w_ij k(z_i, z_j)``, ``z = [x; y]``.

    Biased (V-statistic): ``1/n^2`` within x, ``1/m^2`` within y, ``-1/(n m)`` across (each ordered
    pair, so ``-2/(n m) sum_ij k(x_i, y_j)`` in all). Unbiased (U-statistic): ``1/(n(n-1))`` and
    ``1/(m(m-1))`` off the diagonal, 0 on it (THEOREMS.md, Theorem 4.1: the MMD is the biased one).
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


def log_mmd2(x, y, kind: str, *, estimator: str = "biased", **params):
    """``MMD_k^2(x, y)`` as ``(sign, log|.|, condition)``: the double sum over the pooled sample."""
    x, y = _f64(x, y)
    z = np.concatenate([x, y], axis=-2)
    sign, log_abs = log_gram(kind, z, z, **params)
    return log_weighted_sum(mmd2_weights(x.shape[-2], y.shape[-2], estimator), sign, log_abs)


def mmd2(x, y, kind: str, *, estimator: str = "biased", **params):
    """``MMD_k^2(x, y)`` (V or U statistic) for a kernel of :func:`log_gram`; may overflow (see :func:`log_mmd2`)."""
    sign, log_abs, _ = log_mmd2(x, y, kind, estimator=estimator, **params)
    return sign * np.exp(log_abs)


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


def log_hs_norm2(coef, values, keys, log_scale):
    """``log ||W||_HS^2`` of ``W = exp(log_scale) sum_i c_i v_i ⊗ phi(k_i)`` with its condition.

    The explicit double sum ``sum_ij c_i c_j <v_i, v_j> exp(k_i . k_j)`` (THEOREMS.md, "Weights as
    operators"); returns ``(log ||W||^2, condition)``, ``-inf`` for a zero (or round-off negative) sum.
    """
    coef, values, keys, log_scale = _f64(coef, values, keys, log_scale)
    inner = np.einsum("...ia,...ja->...ij", values, values)
    logits = np.einsum("...ik,...jk->...ij", keys, keys)
    with np.errstate(divide="ignore"):
        sign, log_abs, condition = log_weighted_sum(coef[..., :, None] * coef[..., None, :], np.sign(inner),
                                                    np.log(np.abs(inner)) + logits)
    return np.where(sign > 0, log_abs + 2.0 * log_scale, -np.inf), condition


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
    return summed * np.exp(shift + scale)


def kd_risk(wk, wv, tokens, log_eta, reference):
    """``L(W̄(P)) = mean_x ||W^V x - f_S(x; W̄(P))||^2`` over the rows of ``reference`` (Theorem 4.2)."""
    wv_, reference_ = _f64(wv, reference)
    residual = np.einsum("...ad,...qd->...qa", wv_, reference_) - distilled_prediction(wk, wv, tokens, log_eta,
                                                                                       reference)
    return np.mean(np.sum(residual * residual, axis=-1), axis=-1)


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


def taylor_features(u, order: int):
    """``phi_p(u) = (u^{⊗n} / sqrt(n!))_{n <= p}``, each block the row-major flattening of the tensor power."""
    u = np.asarray(u, np.float64)
    blocks, power = [np.ones(u.shape[:-1] + (1,))], np.ones(u.shape[:-1] + (1,))
    for n in range(1, order + 1):
        power = (power[..., :, None] * u[..., None, :]).reshape(u.shape[:-1] + (-1,))
        blocks.append(power / np.sqrt(math.factorial(n)))
    return np.concatenate(blocks, axis=-1)


def kd_moments(features, targets, weights):
    """``(E phi phi^T, E t phi^T, E||t||^2)`` under row weights summing to 1 (Theorem 3.2's quadratic form)."""
    features, targets, weights = _f64(features, targets, weights)
    return (np.einsum("...n,...ni,...nj->...ij", weights, features, features),
            np.einsum("...n,...na,...ni->...ai", weights, targets, features),
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


def rademacher_exact(gram_matrix, radius):
    """``R_N = (B/N) E_sigma sqrt(sigma^T K sigma)`` over all ``2^N`` sign vectors (the bits of 0..2^N-1)."""
    k = np.asarray(gram_matrix, np.float64)
    n = k.shape[-1]
    if n > 20:
        raise ValueError(f"rademacher_exact enumerates 2^N sign vectors; N = {n} > 20")
    signs = 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1) - 1.0
    quad = np.einsum("si,ij,sj->s", signs, k, signs)
    return radius / n * float(np.mean(np.sqrt(np.maximum(quad, 0.0))))



# ----------------------------------------------------------------------------------------
# Real models (THEOREMS.md, "Real models"): a llama attention layer with rotary positions,
# grouped-query heads and a causal mask; Theorem 4.1's position-aware product kernel.
# ----------------------------------------------------------------------------------------
def rotary(x: np.ndarray, positions: np.ndarray, base: float) -> np.ndarray:
    """``R(p) x`` for rows ``x (n, d_head)``: the adjacent pairs ``(2i, 2i+1)`` as complex numbers times ``e^{i p θ_i}``.

    ``θ_i = base^(-2i / d_head)``: the GGUF layout of llama's rotary embedding (THEOREMS.md,
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
    ``(R(t) W^Q_h x_t) . (R(j) W^K_g x_j) / sqrt(d_head)`` for ``j <= t`` (THEOREMS.md, "Real models").
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

    THEOREMS.md, "Real models" (Theorem 4.1 with tokens replaced by (token, position) pairs);
    ``wk (d_k, d)`` includes any folded temperature. Returns ``(MMD^2, condition)``.
    """
    tokens = np.concatenate([x, y]).astype(np.float64)
    keys = rotary(tokens @ np.asarray(wk, np.float64).T, np.concatenate([p, q]), base)
    coef = np.concatenate([np.full(len(x), -1.0 / len(x)), np.full(len(y), 1.0 / len(y))])
    # MMD^2 = ||mean embedding difference of x ⊗ phi(k)||^2: the HS double sum with values = the tokens
    log_value, condition = log_hs_norm2(coef, tokens, keys, 0.0)
    return float(np.exp(log_value)), float(condition)
