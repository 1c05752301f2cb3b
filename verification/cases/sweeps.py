"""Sweep numerics: the draws and statistics behind the tightness cells of every statement (``iclkd bench
tightness``; each statement's cells are in its folder's ``tightness.py``), and the shift families that
Theorems 4.1 and 4.2 and Conjecture 4.1 are swept along.

Every cell draws from an explicit ``jax.random`` key, runs its per-draw function with
``iclkd_jax.sharding.sharded_vmap`` (``jax.vmap`` in chunks, the draws split across every
JAX device; the keys are split on the host first, so the output does not depend on the
number of devices) and returns plain JSON: ``rows`` (the table) and ``raw`` (per-draw
values the slope fits bootstrap over).

The computations are the verification suite's own: ``verification.cases.sup_gap``
(Taylor features, ``sup_gap``: the exact supremum of ``L - L_N`` over the HS ball by the
trust-region solver, ``theorem_bound``, ``constants``, ``random_weights``) and the
``iclkd_jax`` kernel-form operators used by ``thm_4_1.weight_shift`` and
``thm_4_2.shift_bounds`` (``distilled_weight_difference`` + ``hs_norm``, ``mmd2`` with
``product_kernel``, ``distilled_weights``, ``student``, ``kd_risk``), here in a form
that ``vmap`` traces (those two check helpers leave JAX for NumPy per case).
"""

from __future__ import annotations

import dataclasses
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


def rms_ci(err, level=LEVEL):
    """RMS of errors and a CI from the t-interval of the mean of the squared errors."""
    m, lo, hi = mean_ci(np.asarray(err) ** 2, level)
    return math.sqrt(m), math.sqrt(max(lo, 0.0)), math.sqrt(hi)


def points(items, parameter: str, quantity: str = "") -> list[dict]:
    """The cell records (or rows) of one sweep, by increasing value: those of ``parameter`` whose
    ``quantity`` starts with the given prefix (records have no quantity: the empty prefix keeps them)."""
    return sorted((r for r in items if r["parameter"] == parameter and r.get("quantity", "").startswith(quantity)),
                  key=lambda r: r["value"])


@dataclasses.dataclass(frozen=True)
class Bootstrap:
    """The percentile bootstrap behind a statement's slope fits (the ``tightness_fits`` hook, ``iclkd bench
    tightness``): ``resamples`` resamples of each cell's draws, drawn from the run's seed.

    Attributes:
      seed: the run's seed; ``resamples``: the number of resamples (the sweep's mode decides it);
      width: the most draws a bootstrapped cell may have (one shape of random bits, one compilation).
    """

    seed: int
    resamples: int
    width: int = 4096

    def indices(self, tag: str, n: int, k: int) -> np.ndarray:
        """``(resamples, n)`` indices into ``n`` draws, from the key of ``(seed, "bootstrap", tag, k)``:
        the same ``tag`` and ``k`` give the same resamples (cells resampled jointly share them)."""
        # one fixed shape of random bits (a single compilation for every n); modulo bias < n / 2^32
        bits = np.asarray(jax.random.bits(subkey(self.seed, "bootstrap", tag, k), (self.resamples, self.width),
                                          jnp.uint32))
        if n > self.width:
            raise ValueError(f"bootstrap over n={n} draws needs width >= {n}, got width={self.width}")
        return (bits[:, :n] % n).astype(np.int64)

    @staticmethod
    def ci(values, level: float = LEVEL) -> tuple[float, float]:
        """The percentile interval of the resampled fits ``values`` at ``level``."""
        values = np.asarray(values)
        a = (1 - level) / 2
        return float(np.quantile(values, a)), float(np.quantile(values, 1 - a))


# ------------------------------------------------------------------------------ shift families

#: the base of every shift family: 𝒟 uniform on the unit ball of R^d centred at (0.5, 0, ...), ``2 eta = 1``
SHIFT_BASE = {"d": 4, "dk": 2, "t": 0.1, "log_eta": math.log(0.5), "wk_norm": 1.5, "wv_scale": 1.7}

def _shift_weights(seed, stream, spec):
    """W^K with ||W^K||_op = wk_norm; W^V random (op norm 1) or, for ``attained``, s Q with Q orthogonal (d_v = d)."""
    d, dk = spec["d"], spec["dk"]
    kk, kv = jax.random.split(subkey(seed, f"{stream}/weights", d, dk))
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


def shift_draws(spec: dict, seed: int, stream: str, bandwidths=()) -> tuple[dict, dict]:
    """Per-draw quantities of Theorems 4.1 and 4.2 at one point of a shift family (NumPy arrays).

    ``stream`` labels the keys of the weights and the draws (with ``seed`` and the family's parameters):
    statements that pass the same label are swept on the same samples, a different label draws others.
    """
    wk, wv = _shift_weights(seed, stream, spec)
    base, law = _family(spec, spec["t"])
    t_bound, log_c = max(base.value_bound(wv), law.value_bound(wv)), max(base.log_feature_bound(wk),
                                                                        law.log_feature_bound(wk))
    # the same draws at every t of a family (coupled across t): the key omits t
    key = subkey(seed, f"{stream}/draws", spec["family"], spec["d"], spec["dk"], spec["n"])
    wv_op = float(np.linalg.norm(np.asarray(wv), 2))
    family = "scale" if spec["family"] == "scale" else "translation"  # attained: a translation, another W^V
    out = draws_of(_shift_fn(family, spec["d"], spec["n"], tuple(bandwidths)), key, spec["draws"],
                   jnp.asarray(spec["t"], jnp.float64), wk, wv, jnp.asarray(spec["log_eta"], jnp.float64),
                   jnp.asarray(math.log(wv_op)), jnp.asarray(math.log(t_bound)), jnp.asarray(log_c))
    return out, {"T": t_bound, "log_C": log_c, "wv_op": wv_op}


def stat_row(quantity, obs, bound_each, **extra):
    """Mean observed (t-CI) against the mean bound; per draw observed <= bound, so the means are ordered too."""
    m, lo, hi = mean_ci(obs)
    ratio = np.asarray(obs) / np.asarray(bound_each)
    return {"quantity": quantity, "bound": float(np.mean(bound_each)), "observed": m, "observed_lo": lo,
            "observed_hi": hi, "ratio": m / float(np.mean(bound_each)), "max_ratio": float(ratio.max()),
            "min_ratio": float(ratio.min()), "draws": int(np.size(obs)), **extra}
