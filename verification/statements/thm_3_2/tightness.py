"""Theorem 3.2's tightness cells (docs/statements.md#thm-3-2; ``iclkd bench tightness``, docs/tightness.md)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from iclkd_jax import distributions as dists
from verification.cases import sup_gap
from verification.cases.sweeps import (
    Bootstrap,
    clopper_pearson,
    draws_of,
    ols_slope,
    points,
    quantile_ci,
    subkey,
)
from verification.core.protocol import TightnessCell, TightnessTable


def ball_population(wk, wv, dim: int, radius: float):
    """Exact ``(E phi phi^T, E t phi^T, E||t||^2)`` of thm-3.2's Taylor map (order 2) on the centred ball.

    Uniform ball of radius r in R^d: ``E x x^T = c2 I``, ``E x^{⊗4} = c4 (δδ + δδ + δδ)`` with
    ``c2 = r^2/(d+2)``, ``c4 = r^4/((d+2)(d+4))``, odd moments 0. With ``u = W^K x``,
    ``S = W^K W^K^T``, ``phi = (1, u, u⊗u/sqrt 2)`` (``taylor_features`` order): no reference sample,
    so the population error is 0.
    """
    base = sup_gap
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
    base = sup_gap

    def one(key, n, dim, radius, wk, wv, pop_sigma, pop_m, pop_c, ball):
        tokens = centred_ball(key, rows, dim, radius, base.TOKEN_DIM)
        probes = jnp.zeros((1, base.VALUE_DIM * base.NUM_FEATURES), tokens.dtype)
        weights = jnp.where(jnp.arange(rows) < n, 1.0 / n, 0.0)
        gap, _, _, _ = base.sup_gap(tokens, probes, weights, wk, wv, pop_sigma, pop_m, pop_c, ball, 1.0)
        return gap

    return one


def compute(spec: dict, seed: int) -> dict:
    """(1-δ)-quantile of the exact supremum gap G_N against the bound and its two pieces."""
    base = sup_gap
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


#: the sweeps of each mode: N (the rate), B, delta and d around the base cell
MODES = {
    "tiny": {"N": [16, 64], "draws": 64, "B": [], "delta": [], "d": []},
    "quick": {"N": [8, 16, 32, 64, 128, 256, 512], "draws": 1000, "B": [0.25, 0.5, 2.0], "delta": [0.01, 0.1, 0.2],
              "d": [1, 2]},
    "full": {"N": [8, 16, 32, 64, 128, 256, 512, 1024, 2048], "draws": 4000, "B": [0.25, 0.5, 2.0, 4.0],
             "delta": [0.005, 0.01, 0.1, 0.2, 0.5], "d": [1, 2]},
}
BASE = {"d": 3, "N": 128, "B": 1.0, "delta": 0.05, "radius": 1.0, "wk_norm": 0.7, "wv_norm": 1.0}


def cells(mode: str) -> list[TightnessCell]:
    """The (1-δ)-quantile of the exact supremum gap against the bound, across N, B, δ and d."""
    c = MODES[mode]
    return [TightnessCell(name, value, {**BASE, name: value, "draws": c["draws"]}, compute)
            for name in ("N", "B", "delta", "d") for value in c[name]]


#: the columns of Theorem 3.2's table in ``summary.md``: the bound's two pieces beside it
TABLE = TightnessTable(("parameter", "value", "bound", "rademacher_term", "deviation_term", "observed", "observed_lo",
                        "observed_hi", "ratio", "violation_rate", "draws"))


def fits(records: list[dict], bootstrap: Bootstrap) -> dict:
    """The (1-δ)-quantile of the sup gap, the bound and its two pieces against N: log-log slopes (the
    quantile's with a bootstrap CI, draws resampled within each cell)."""
    n_cells = points(records, "N")
    if len(n_cells) < 2:
        return {}
    ns = np.array([r["value"] for r in n_cells], float)
    delta = n_cells[0]["spec"]["delta"]
    qs = np.array([r["rows"][0]["observed"] for r in n_cells])
    boot_q = np.empty((bootstrap.resamples, len(n_cells)))
    for j, r in enumerate(n_cells):
        g = np.sort(np.asarray(r["raw"]["gaps"]))
        idx = bootstrap.indices("thm-3.2", g.size, j)
        boot_q[:, j] = np.quantile(g[idx], 1 - delta, axis=1, method="inverted_cdf")
    xs = np.log(ns)
    lo, hi = bootstrap.ci([ols_slope(xs, np.log(np.maximum(b, 1e-300))) for b in boot_q])
    pieces = {k: np.array([r["rows"][0][k] for r in n_cells]) for k in ("bound", "rademacher_term", "deviation_term")}
    return {"thm-3.2": {"x": "log N", "y": "log (1-δ)-quantile of the sup gap", "N": ns.tolist(),
                        "slope": ols_slope(xs, np.log(qs)), "slope_lo": lo, "slope_hi": hi,
                        "bound_slope": ols_slope(xs, np.log(pieces["bound"])),
                        "rademacher_term_slope": ols_slope(xs, np.log(pieces["rademacher_term"])),
                        "deviation_term_slope": ols_slope(xs, np.log(pieces["deviation_term"])),
                        "bootstrap": bootstrap.resamples, "level": 0.95, "delta": delta}}


def figure(rows: list[dict], slopes: dict, plot) -> None:
    """The quantile of the sup gap, the bound and its two pieces against N (log-log)."""
    s = points(rows, "N")
    if not s:
        return
    fig, ax = plot.subplots(figsize=(6.4, 4.4))
    n = [r["value"] for r in s]
    sl = slopes.get("thm-3.2", {})
    plot.band(ax, s, f"(1-δ)-quantile of sup gap (slope {sl.get('slope', float('nan')):.2f})", "C0")
    ax.plot(n, [r["bound"] for r in s], "k-", label=f"bound (slope {sl.get('bound_slope', float('nan')):.2f})")
    ax.plot(n, [r["rademacher_term"] for r in s], "k--", label="Rademacher term 4BC(T+BC)/√N")
    ax.plot(n, [r["deviation_term"] for r in s], "k:", label="deviation term (T+BC)²√(log(1/δ)/2N)")
    plot.axes(ax, "N (demonstrations)", "sup_{‖W‖≤B} L(W) − L_N(W)  (squared value units)",
              f"Theorem 3.2, δ={s[0]['quantity'].split('δ=')[-1]}, uniform ball d=3")
    plot.save(fig)
