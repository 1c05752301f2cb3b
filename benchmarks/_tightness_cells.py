"""The computations behind one cell of ``benchmarks.tightness`` (one point of one sweep).

Every cell draws from an explicit ``jax.random`` key, runs its per-draw function with
``iclkd_jax.sharding.sharded_vmap`` (``jax.vmap`` in chunks, the draws split across every
JAX device; the keys are split on the host first, so the output does not depend on the
number of devices) and returns plain JSON: ``rows`` (the table) and ``raw`` (per-draw
values the slope fits bootstrap over).

The computations are the verification suite's own: ``verification.sup_gap``
(Taylor features, ``sup_gap``: the exact supremum of ``L - L_N`` over the HS ball by the
trust-region solver, ``theorem_bound``, ``constants``, ``random_weights``) and the
``iclkd_jax`` kernel-form operators used by ``thm_4_1.weight_shift`` and
``thm_4_2.shift_bounds`` (``distilled_weight_difference`` + ``hs_norm``, ``mmd2`` with
``product_kernel``, ``distilled_weights``, ``student``, ``kd_risk``), here in a form
that ``vmap`` traces (those two check helpers leave JAX for NumPy per case).
"""

from __future__ import annotations

import functools
import hashlib
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import iclkd_jax as ik
from iclkd_jax import distributions as dists
from iclkd_jax import sharding as sh

#: items vmapped together per device (results are bitwise identical for any device count at this size)
CHUNK = 32
LEVEL = 0.95  # two-sided confidence level of every interval


def stable_int(*parts) -> int:
    """A 31-bit integer from a description (fold_in data; stable across processes, unlike hash())."""
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def subkey(seed: int, *parts) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), stable_int(*parts))


def draws_of(fn, key, num_draws, *args):
    """``fn(k_i, *args)`` for ``num_draws`` keys split from ``key``, sharded; NumPy out."""
    return sh.gather(sh.sharded_vmap(fn, jax.random.split(key, num_draws), *args, chunk_size=CHUNK))


# ----------------------------------------------------------------------------------- statistics

def quantile_ci(x, p, level=LEVEL):
    """The ``p``-quantile ``x_(ceil(n p))`` and its distribution-free order-statistic CI.

    ``[x_(l), x_(u)]`` with ``l, u`` binomial(n, p) quantiles: coverage >= ``level`` (exact
    binomial, conservative); ranks clipped to the sample.
    """
    x = np.sort(np.asarray(x, np.float64))
    n = x.size
    point = x[max(int(math.ceil(n * p)) - 1, 0)]
    a = (1 - level) / 2
    lo = int(stats.binom.ppf(a, n, p))            # P(B < lo) <= a
    hi = int(stats.binom.ppf(1 - a, n, p)) + 1
    return float(point), float(x[max(lo - 1, 0)]), float(x[min(hi - 1, n - 1)])


def mean_ci(x, level=LEVEL):
    """Mean and its Student-t CI."""
    x = np.asarray(x, np.float64)
    m = float(x.mean())
    if x.size < 2:
        return m, m, m
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


def clopper_pearson(k, n, level=LEVEL):
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def ols_slope(x, y) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xc = x - x.mean()
    return float(np.sum(xc * (y - y.mean())) / np.sum(xc * xc))


# ------------------------------------------------------------------------------------ thm-3.2

def _base32():
    from verification.cases import sup_gap
    return sup_gap


def ball_population(wk, wv, dim: int, radius: float):
    """Exact ``(E phi phi^T, E t phi^T, E||t||^2)`` of thm-3.2's Taylor map (order 2) on the centred ball.

    Uniform ball of radius r in R^d: ``E x x^T = c2 I``, ``E x^{⊗4} = c4 (δδ + δδ + δδ)`` with
    ``c2 = r^2/(d+2)``, ``c4 = r^4/((d+2)(d+4))``, odd moments 0. With ``u = W^K x``,
    ``S = W^K W^K^T``, ``phi = (1, u, u⊗u/sqrt 2)`` (``taylor_features`` order): no reference sample,
    so the population error is 0.
    """
    base = _base32()
    assert base.ORDER == 2, "ball_population is written for Taylor order 2"
    wk, wv = np.asarray(wk, np.float64), np.asarray(wv, np.float64)
    k = wk.shape[0]
    c2, c4 = radius**2 / (dim + 2), radius**4 / ((dim + 2) * (dim + 4))
    s = wk @ wk.T
    m = 1 + k + k * k
    sig = np.zeros((m, m))
    sig[0, 0] = 1.0
    sig[0, 1 + k:] = sig[1 + k:, 0] = c2 * s.reshape(-1) / math.sqrt(2)
    sig[1:1 + k, 1:1 + k] = c2 * s
    four = c4 * (np.einsum("ab,cd->abcd", s, s) + np.einsum("ac,bd->abcd", s, s) + np.einsum("ad,bc->abcd", s, s))
    sig[1 + k:, 1 + k:] = four.reshape(k * k, k * k) / 2.0
    mm = np.zeros((wv.shape[0], m))
    mm[:, 1:1 + k] = c2 * wv @ wk.T
    c = c2 * float(np.trace(wv @ wv.T))
    return jnp.asarray(sig), jnp.asarray(mm), jnp.asarray(c)


def padded_rows(n: int) -> int:
    """Rows a draw of ``n`` demonstrations is padded to (zero weight beyond ``n``): powers of 2 from 64, so
    several N share one compiled program; a function of ``n`` alone, so results do not depend on the mode."""
    return max(64, 1 << (int(n) - 1).bit_length())


def centred_ball(key, rows: int, dim, radius, width: int):
    """``rows`` uniform draws of the centred ball of radius ``radius`` in R^dim, zero-padded to ``width``.

    ``dim`` is traced (one program for every d <= width): Gaussian directions masked to the first
    ``dim`` coordinates and normalised, radii ``radius U^{1/dim}``.
    """
    dir_key, rad_key = jax.random.split(key)
    mask = (jnp.arange(width) < dim).astype(jnp.float64)
    g = jax.random.normal(dir_key, (rows, width), jnp.float64) * mask
    g = g / jnp.linalg.norm(g, axis=-1, keepdims=True)
    return radius * jax.random.uniform(rad_key, (rows, 1), jnp.float64) ** (1.0 / dim) * g


@functools.cache
def _gap_fn(rows: int):
    """Per draw: the exact sup gap of thm-3.2 on ``n`` uniform-ball tokens (the first ``n`` of ``rows``)."""
    base = _base32()

    def one(key, n, dim, radius, wk, wv, pop_sigma, pop_m, pop_c, ball):
        tokens = centred_ball(key, rows, dim, radius, base.TOKEN_DIM)
        probes = jnp.zeros((1, base.VALUE_DIM * base.NUM_FEATURES), tokens.dtype)
        weights = jnp.where(jnp.arange(rows) < n, 1.0 / n, 0.0)
        gap, _, _, _ = base.sup_gap(tokens, probes, weights, wk, wv, pop_sigma, pop_m, pop_c, ball, 1.0)
        return gap

    return one


def thm_3_2(spec: dict, seed: int) -> dict:
    """(1-δ)-quantile of the exact supremum gap G_N against the bound and its two pieces."""
    base = _base32()
    dim, n, b, delta, radius = spec["d"], spec["N"], spec["B"], spec["delta"], spec["radius"]
    if dim > base.TOKEN_DIM:
        raise ValueError(f"thm-3.2 cells need d <= {base.TOKEN_DIM} (thm_3_2.TOKEN_DIM), got {dim}")
    dist = dists.uniform_ball(dim, radius=radius)
    setting = base.Setting(f"ball d={dim}", dist, n, b, spec["wk_norm"], spec["wv_norm"])
    wk, wv = base.random_weights(subkey(seed, "thm-3.2/weights", dim), setting)
    consts = base.constants(setting, wk, wv)
    pop = ball_population(wk, wv, dim, radius)
    # the draws depend on (d, N, B, radius, weights), not on delta: a delta sweep reuses the same gaps
    key = subkey(seed, "thm-3.2/draws", dim, n, b, radius, spec["wk_norm"], spec["wv_norm"])
    f64 = functools.partial(jnp.asarray, dtype=jnp.float64)
    gaps = draws_of(_gap_fn(padded_rows(n)), key, spec["draws"], f64(n), f64(dim), f64(radius), f64(wk), f64(wv),
                    *pop, f64(b))
    t, c = consts.T, consts.C
    s = t + b * c
    rad_term = 4 * b * c * s / math.sqrt(n)
    dev_term = s**2 * math.sqrt(math.log(1 / delta) / (2 * n))
    bound = float(base.theorem_bound(b, c, t, n, delta=delta))
    q, q_lo, q_hi = quantile_ci(gaps, 1 - delta)
    k = int(np.sum(gaps > bound))
    v_lo, v_hi = clopper_pearson(k, gaps.size)
    row = {"quantity": f"(1-δ)-quantile of sup gap, δ={delta:g}", "bound": bound, "observed": q,
           "observed_lo": q_lo, "observed_hi": q_hi, "ratio": q / bound,
           "rademacher_term": rad_term, "deviation_term": dev_term,
           "bound_exact_map_C": float(base.theorem_bound(b, consts.C_exact_map, t, n, delta=delta)),
           "T": t, "C": c, "C_exact_map": consts.C_exact_map, "mean_gap": float(gaps.mean()),
           "max_gap": float(gaps.max()), "violations": k, "violation_rate": k / gaps.size,
           "violation_rate_lo": v_lo, "violation_rate_hi": v_hi, "draws": int(gaps.size),
           "population_error": 0.0, "population": "exact moments of the uniform ball"}
    return {"rows": [row], "raw": {"gaps": gaps.tolist()}}


# ------------------------------------------------------------------------------ thm-4.1 / 4.2

def _weights_41(seed, spec):
    """W^K with ||W^K||_op = wk_norm; W^V random (op norm 1) or, for ``attained``, s Q with Q orthogonal (d_v = d)."""
    d, dk = spec["d"], spec["dk"]
    kk, kv = jax.random.split(subkey(seed, "thm-4.1/weights", d, dk))
    wk = np.asarray(jax.random.normal(kk, (dk, d), jnp.float64))
    wk = spec["wk_norm"] * wk / np.linalg.norm(wk, 2)
    g = np.asarray(jax.random.normal(kv, (d, d), jnp.float64))
    if spec["family"] == "attained":
        q, r = np.linalg.qr(g)
        wv = spec["wv_scale"] * q * np.sign(np.diag(r))[None, :]
    else:
        wv = g / np.linalg.norm(g, 2)
    return jnp.asarray(wk), jnp.asarray(wv)


def _family(spec, t):
    base = dists.uniform_ball(spec["d"], radius=1.0, center=[0.5] + [0.0] * (spec["d"] - 1))
    if spec["family"] == "scale":
        return base, dists.scale_family(base, t)
    direction = np.ones(spec["d"])
    return base, dists.shift_family(base, direction, t)


@functools.cache
def _shift_fn(family: str, d: int, n: int, bandwidths: tuple):
    """Per draw: coupled samples of 𝒟 and 𝒬_t (one key), ΔW, MMD_k, predictions and KD risks."""
    def one(key, t, wk, wv, log_eta, log_mv, log_t_bound, log_c_bound):
        # t enters only through the law's centre/scale, built here in JAX so t can be traced
        base = dists.uniform_ball(d, radius=1.0, center=[0.5] + [0.0] * (d - 1))
        draw_key, query_key = jax.random.split(key)
        target = base.sample(draw_key, n, jnp.float64)
        if family == "scale":
            mean = jnp.asarray(base.mean)
            prompt = mean + (1.0 + t) * (target - mean)
        else:
            prompt = target + t * jnp.ones(d) / math.sqrt(d)
        weights = ik.AttentionWeights(wk, wk, wv)
        dw = ik.hs_norm(ik.distilled_weight_difference(weights, target, prompt, log_eta=log_eta))
        mmd2 = ik.mmd2(target, prompt, ik.product_kernel(wk))
        log_bound = jnp.log(2.0) + log_eta + log_mv + 0.5 * jnp.log(jnp.maximum(mmd2, 1e-300))
        # Theorem 4.2 (i) at one fresh query from 𝒟; (ii) on 𝒟's sample (the reference)
        query = base.sample(query_key, 1, jnp.float64)
        w_q = ik.distilled_weights(weights, prompt, log_eta=log_eta)
        w_d = ik.distilled_weights(weights, target, log_eta=log_eta)
        pred = jnp.linalg.norm(ik.student(w_q, weights, query) - ik.student(w_d, weights, query))
        log_phi = 0.5 * jnp.sum((query @ wk.T) ** 2)
        risk = jnp.abs(ik.kd_risk(w_q, weights, target) - ik.kd_risk(w_d, weights, target))
        log_b = 0.5 * jnp.maximum(ik.hs_norm(w_q).log_value, ik.hs_norm(w_d).log_value)
        log_tbc = jnp.logaddexp(log_t_bound, log_b + log_c_bound)
        out = {"log_dw": 0.5 * dw.log_value, "log_bound": log_bound, "pred": pred,
               "log_pred_bound_hs": 0.5 * dw.log_value + log_phi, "log_pred_bound": log_bound + log_phi,
               "risk": risk, "log_risk_bound_hs": jnp.log(2.0) + log_tbc + log_c_bound + 0.5 * dw.log_value,
               "log_risk_bound": jnp.log(2.0) + log_tbc + log_c_bound + log_bound}
        for i, bw in enumerate(bandwidths):
            out[f"mmd_rbf_{i}"] = jnp.sqrt(jnp.maximum(ik.mmd2(target, prompt, ik.rbf_kernel(bandwidth=bw)), 0.0))
        return out

    return one


def shift_draws(spec: dict, seed: int, bandwidths=()) -> tuple[dict, dict]:
    """Per-draw thm-4.1 / thm-4.2 quantities at one point of a shift family (NumPy arrays)."""
    wk, wv = _weights_41(seed, spec)
    base, law = _family(spec, spec["t"])
    t_bound, log_c = max(base.value_bound(wv), law.value_bound(wv)), max(base.log_feature_bound(wk),
                                                                        law.log_feature_bound(wk))
    # the same draws at every t of a family (coupled across t): the key omits t
    key = subkey(seed, "thm-4.1/draws", spec["family"], spec["d"], spec["dk"], spec["n"])
    wv_op = float(np.linalg.norm(np.asarray(wv), 2))
    family = "scale" if spec["family"] == "scale" else "translation"  # attained: a translation, another W^V
    out = draws_of(_shift_fn(family, spec["d"], spec["n"], tuple(bandwidths)), key, spec["draws"],
                   jnp.asarray(spec["t"], jnp.float64), wk, wv, jnp.asarray(spec["log_eta"], jnp.float64),
                   jnp.asarray(math.log(wv_op)), jnp.asarray(math.log(t_bound)), jnp.asarray(log_c))
    return out, {"T": t_bound, "log_C": log_c, "wv_op": wv_op}


def _stat_row(quantity, obs, bound_each, **extra):
    """Mean observed (t-CI) against the mean bound; per draw observed <= bound, so the means are ordered too."""
    m, lo, hi = mean_ci(obs)
    ratio = np.asarray(obs) / np.asarray(bound_each)
    return {"quantity": quantity, "bound": float(np.mean(bound_each)), "observed": m, "observed_lo": lo,
            "observed_hi": hi, "ratio": m / float(np.mean(bound_each)), "max_ratio": float(ratio.max()),
            "min_ratio": float(ratio.min()), "draws": int(np.size(obs)), **extra}


def thm_4_1(spec: dict, seed: int) -> dict:
    out, consts = shift_draws(spec, seed)
    dw, bound = np.exp(out["log_dw"]), np.exp(out["log_bound"])
    row = _stat_row("||ΔW||_HS (coupled samples, mean over draws)", dw, bound, family=spec["family"],
                    max_abs_ratio_minus_1=float(np.max(np.abs(dw / bound - 1.0))), wv_op=consts["wv_op"])
    return {"rows": [row], "raw": {"observed": dw.tolist(), "bound": bound.tolist()}}


def conj_4_1(spec: dict, seed: int) -> dict:
    """The constant ``sup ||ΔW|| / MMD_rbf(σ)`` found, per bandwidth σ (no bound: Conjecture 4.1')."""
    bws = tuple(spec["bandwidths"])
    out, _ = shift_draws(spec, seed, bws)
    dw = np.exp(out["log_dw"])
    rows = []
    for i, bw in enumerate(bws):
        ratio = dw / out[f"mmd_rbf_{i}"]
        rows.append({"parameter": "bandwidth", "value": bw, "quantity": "max over draws of ||ΔW|| / MMD_rbf",
                     "bound": None, "observed": float(ratio.max()), "median_ratio": float(np.median(ratio)),
                     "draws": int(ratio.size)})
    return {"rows": rows, "raw": {}}


def thm_4_2(spec: dict, seed: int) -> dict:
    out, consts = shift_draws(spec, seed)
    pred_b, risk_b = np.exp(out["log_pred_bound"]), np.exp(out["log_risk_bound"])
    rows = [_stat_row("prediction shift ||f_S(x;W̄(Q)) - f_S(x;W̄(D))||", out["pred"], pred_b,
                      bound_hs_mean=float(np.mean(np.exp(out["log_pred_bound_hs"])))),
            _stat_row("KD-risk shift |L(W̄(Q)) - L(W̄(D))|", out["risk"], risk_b,
                      bound_hs_mean=float(np.mean(np.exp(out["log_risk_bound_hs"]))), T=consts["T"],
                      C=math.exp(consts["log_C"]))]
    return {"rows": rows, "raw": {}}


# ----------------------------------------------------------------------------- lemma-features

def predicted_rms(kind: str, u, z, m: int) -> float | None:
    """RMS relative error of ``phi(u).phi(z)`` for ``exp(u.z)`` with m iid features: ``sqrt(sigma^2 / m)``.

    ``sigma^2`` is lemma-features' per-feature relative variance (``exp(|u+z|^2) - 1`` positive,
    ``exp(|u-z|^2) - 1 + exp(-|u-z|^2)/2`` trig); orthogonal features have no closed form (None).
    """
    if kind == "orthogonal":
        return None
    from verification.oracles.feature_variance import per_feature_variance
    return math.sqrt(float(per_feature_variance(kind, np.asarray(u), np.asarray(z))) / m)


@functools.cache
def _feature_fn(kind: str, m: int, dk: int):
    def one(key, u, z):
        if kind == "trig":
            fm = ik.trig_random_features(key, m, key_dim=dk, dtype=jnp.float64)
        else:
            fm = ik.positive_random_features(key, m, key_dim=dk, orthogonal=kind == "orthogonal", dtype=jnp.float64)
        est = (fm(u[None]) @ fm(z[None]).T)[0, 0]
        return est * jnp.exp(-jnp.dot(u, z)) - 1.0

    return one


def feature_pair(dk: int, sum_norm: float, diff_norm: float):
    """``u, z`` in R^{d_k} with ``|u+z| = sum_norm`` and ``|u-z| = diff_norm`` (orthogonal directions)."""
    e1, e2 = np.zeros(dk), np.zeros(dk)
    e1[0] = 1.0
    e2[min(1, dk - 1)] = 1.0
    s, dd = sum_norm * e1, diff_norm * e2
    return (s + dd) / 2, (s - dd) / 2


def rms_ci(err, level=LEVEL):
    """RMS of errors and a CI from the t-interval of the mean of the squared errors."""
    m, lo, hi = mean_ci(np.asarray(err) ** 2, level)
    return math.sqrt(m), math.sqrt(max(lo, 0.0)), math.sqrt(hi)


def lemma_features(spec: dict, seed: int) -> dict:
    kind, m, dk = spec["kind"], spec["m"], spec["dk"]
    u, z = feature_pair(dk, spec["sum_norm"], spec["diff_norm"])
    key = subkey(seed, "lemma-features/draws", kind, m, dk, spec["sum_norm"], spec["diff_norm"])
    err = draws_of(_feature_fn(kind, m, dk), key, spec["draws"], jnp.asarray(u), jnp.asarray(z))
    r, lo, hi = rms_ci(err)
    pred = predicted_rms(kind, u, z, m)
    row = {"quantity": f"RMS relative error of phi(u).phi(z), {kind}", "feature_map": kind, "bound": pred,
           "observed": r, "observed_lo": lo, "observed_hi": hi, "mean_error": float(np.mean(err)),
           "|u+z|": spec["sum_norm"], "|u-z|": spec["diff_norm"], "m": m, "draws": int(err.size),
           "prediction_in_ci": None if pred is None else bool(lo <= pred <= hi)}
    if spec.get("target_error"):
        eps = spec["target_error"]
        # RMS ∝ m^{-1/2}: m needed for RMS = eps is m (RMS/eps)^2, with the CI carried through
        row.update({"quantity": f"features needed for RMS relative error {eps:g}, {kind}",
                    "bound": None if pred is None else m * (pred / eps) ** 2,
                    "observed": m * (r / eps) ** 2, "observed_lo": m * (lo / eps) ** 2,
                    "observed_hi": m * (hi / eps) ** 2, "rms_at_m": r,
                    "prediction_in_ci": None if pred is None else bool(lo <= pred <= hi)})
    return {"rows": [row], "raw": {"err": np.asarray(err).tolist()}}


COMPUTE = {"thm-3.2": thm_3_2, "thm-4.1": thm_4_1, "conj-4.1": conj_4_1, "thm-4.2": thm_4_2,
           "lemma-features": lemma_features}
