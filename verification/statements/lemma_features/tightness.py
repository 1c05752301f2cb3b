"""The feature-map lemma's tightness cells (docs/statements.md#lemma-features; ``iclkd bench tightness``, docs/tightness.md)."""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

import iclkd_jax as ik
from verification.cases.sweeps import (
    Bootstrap,
    draws_of,
    ols_slope,
    points,
    rms_ci,
    subkey,
)
from verification.core.protocol import TightnessCell, TightnessTable
from verification.oracles.feature_variance import per_feature_variance
from verification.statements.lemma_features.check import TARGET_RELATIVE_ERROR


def predicted_rms(kind: str, u, z, m: int) -> float | None:
    """RMS relative error of ``phi(u).phi(z)`` for ``exp(u.z)`` with m iid features: ``sqrt(sigma^2 / m)``.

    ``sigma^2`` is lemma-features' per-feature relative variance (``exp(|u+z|^2) - 1`` positive,
    ``exp(|u-z|^2) - 1 + exp(-|u-z|^2)/2`` trig); orthogonal features have no closed form (None).
    """
    if kind == "orthogonal":
        return None
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




def compute(spec: dict, seed: int) -> dict:
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


#: the feature counts m, maps and |k+q| of each mode
MODES = {
    "tiny": {"m": [16], "kinds": ["positive"], "sum_norms": [1.0], "draws": 64, "m0": 16},
    "quick": {"m": [16, 64, 256, 1024, 4096], "kinds": ["positive", "orthogonal", "trig"],
              "sum_norms": [0.5, 1.0, 1.5, 2.0, 2.5], "draws": 1000, "m0": 256},
    "full": {"m": [16, 64, 256, 1024, 4096, 16384], "kinds": ["positive", "orthogonal", "trig"],
             "sum_norms": [0.5, 1.0, 1.5, 2.0, 2.5, 3.0], "draws": 4000, "m0": 1024},
}
BASE = {"dk": 4, "sum_norm": 1.0, "diff_norm": 0.5}


def cells(mode: str) -> list[TightnessCell]:
    """RMS relative error of random features against m (rate m^{-1/2}, a prediction), and the features
    needed for the check's target error as |k+q| grows."""
    c = MODES[mode]
    out = [TightnessCell(f"m ({kind})", m, {**BASE, "kind": kind, "m": m, "draws": c["draws"]}, compute,
                         kind="prediction") for kind in c["kinds"] for m in c["m"]]
    out += [TightnessCell("|k+q| (positive)", r, {**BASE, "kind": "positive", "m": c["m0"], "sum_norm": r, "diff_norm": 0.0,
                                                  "target_error": TARGET_RELATIVE_ERROR, "draws": c["draws"]},
                          compute, kind="prediction") for r in c["sum_norms"]]
    return out


KINDS = ("positive", "orthogonal", "trig")

#: the columns of the lemma's table in ``summary.md``, and what its ``bound`` column means
TABLE = TightnessTable(("parameter", "value", "quantity", "bound", "observed", "observed_lo", "observed_hi",
                        "prediction_in_ci"),
                       "`bound` here is the predicted value (an expectation, not an upper bound): for iid positive and "
                       "trigonometric features the per-feature variance is known exactly; orthogonal features have "
                       "no closed form.")


def fits(records: list[dict], bootstrap: Bootstrap) -> dict:
    """The RMS relative error against m per kind (log-log slope, predicted -1/2), and the m needed for a fixed
    RMS relative error against ``|k+q|^2`` (slope of its log, predicted to tend to 1); bootstrap CIs."""
    out = {}
    for kind in KINDS:
        fc = points(records, f"m ({kind})")
        if len(fc) < 2:
            continue
        ms = np.log([r["value"] for r in fc])
        errs = [np.asarray(r["raw"]["err"]) for r in fc]
        rms = np.array([math.sqrt(np.mean(e**2)) for e in errs])
        boot = np.empty((bootstrap.resamples, len(fc)))
        for j, e in enumerate(errs):
            boot[:, j] = np.sqrt(np.mean(e[bootstrap.indices(f"features/{kind}", e.size, j)] ** 2, axis=1))
        fit_ci = bootstrap.ci([ols_slope(ms, np.log(b)) for b in boot])
        out[f"lemma-features ({kind})"] = {"x": "log m", "y": "log RMS relative error", "m": np.exp(ms).tolist(),
                                           "slope": ols_slope(ms, np.log(rms)), "slope_lo": fit_ci[0],
                                           "slope_hi": fit_ci[1], "predicted_slope": -0.5,
                                           "bootstrap": bootstrap.resamples}
    fc = points(records, "|k+q| (positive)")
    if len(fc) >= 2:
        r2 = np.array([r["value"] ** 2 for r in fc])
        need = np.array([r["rows"][0]["observed"] for r in fc])
        pred = np.array([r["rows"][0]["bound"] for r in fc])
        m0 = fc[0]["spec"]["m"]
        eps = fc[0]["spec"]["target_error"]
        boot = np.empty((bootstrap.resamples, len(fc)))
        for j, r in enumerate(fc):
            e = np.asarray(r["raw"]["err"])
            boot[:, j] = m0 * np.mean(e[bootstrap.indices("features/growth", e.size, j)] ** 2, axis=1) / eps**2
        fit_ci = bootstrap.ci([ols_slope(r2, np.log(b)) for b in boot])
        out["lemma-features (m needed vs |k+q|^2)"] = {
            "x": "|k+q|^2", "y": f"log m needed for RMS relative error {eps:g}", "|k+q|": np.sqrt(r2).tolist(),
            "slope": ols_slope(r2, np.log(need)), "slope_lo": fit_ci[0], "slope_hi": fit_ci[1],
            "predicted_slope": ols_slope(r2, np.log(pred)), "bootstrap": bootstrap.resamples,
            "note": "log m_needed = log((exp(|k+q|^2) - 1)/eps^2): slope in |k+q|^2 tends to 1"}
    return out


def figure(rows: list[dict], slopes: dict, plot) -> None:
    """The RMS relative error against m per kind, and (beside it) the m needed as ``|k+q|`` grows."""
    kinds = [k for k in KINDS if points(rows, f"m ({k})")]
    if not kinds:
        return
    growth = points(rows, "|k+q| (positive)")
    fig, axes = plot.subplots(1, 2 if growth else 1, figsize=(10 if growth else 6.4, 4.4), squeeze=False)
    ax = axes[0, 0]
    for i, kind in enumerate(kinds):
        s = points(rows, f"m ({kind})")
        sl = slopes.get(f"lemma-features ({kind})", {})
        plot.band(ax, s, f"{kind} (slope {sl.get('slope', float('nan')):.2f})", f"C{i}")
        if s[0]["bound"] is not None:
            ax.plot([r["value"] for r in s], [r["bound"] for r in s], ":", color=f"C{i}",
                    label=f"{kind}: predicted √(var/m)")
    plot.axes(ax, "m (random features)", "RMS relative error of φ(u)·φ(z) vs exp(u·z)", "Random-feature error against m")
    if growth:
        ax = axes[0, 1]
        plot.band(ax, growth, "m needed (measured)", "C0")
        ax.plot([r["value"] for r in growth], [r["bound"] for r in growth], "k--",
                label="predicted (exp(‖k+q‖²)−1)/ε²")
        plot.axes(ax, "‖k + q‖", "features m for RMS relative error ε", "Positive features: exp(‖k+q‖²) growth",
                  logx=False)
    plot.save(fig)
