"""Theorem 4.1's tightness cells (docs/statements.md#thm-4-1; ``iclkd bench tightness``, docs/tightness.md)."""

from __future__ import annotations

import numpy as np

from verification.cases.sweeps import (
    SHIFT_BASE,
    Bootstrap,
    ols_slope,
    points,
    shift_draws,
    stat_row,
)
from verification.core.protocol import TightnessCell

#: the label the shift families' weights and draws are keyed by (``shift_draws``): Theorem 4.2's and
#: Conjecture 4.1's cells pass it too, so the three sweeps use the same samples and compare draw by draw;
#: another label would draw other samples (and change every figure of the sweeps)
SHIFT_STREAM = "thm-4.1"


def compute(spec: dict, seed: int) -> dict:
    out, consts = shift_draws(spec, seed, SHIFT_STREAM)
    dw, bound = np.exp(out["log_dw"]), np.exp(out["log_bound"])
    row = stat_row("||ΔW||_HS (coupled samples, mean over draws)", dw, bound, family=spec["family"],
                    max_abs_ratio_minus_1=float(np.max(np.abs(dw / bound - 1.0))), wv_op=consts["wv_op"])
    return {"rows": [row], "raw": {"observed": dw.tolist(), "bound": bound.tolist()}}


#: the families and parameters of each mode
MODES = {
    "tiny": {"t": [0.1, 0.03], "families": ["translation", "attained"], "d": [], "dk": [], "draws": 16, "n": 4},
    "quick": {"t": [0.2, 0.1, 0.05, 0.025, 0.0125], "families": ["translation", "scale", "attained"], "d": [2, 8],
              "dk": [1, 4], "draws": 128, "n": 16},
    "full": {"t": [0.4, 0.2, 0.1, 0.05, 0.025, 0.0125, 0.00625], "families": ["translation", "scale", "attained"],
             "d": [2, 8, 16], "dk": [1, 2, 8], "draws": 512, "n": 32},
}


def cells(mode: str) -> list[TightnessCell]:
    """||ΔW||_HS against 2 eta ||W^V||_op MMD_k along translation, scale and attained families, and across d, d_k."""
    c = MODES[mode]
    shift = dict(SHIFT_BASE, n=c["n"], draws=c["draws"])
    out = [TightnessCell(f"t ({family})", t, {**shift, "family": family, "t": t}, compute)
           for family in c["families"] for t in c["t"]]
    for d in c["d"]:
        out.append(TightnessCell("d (translation)", d, {**shift, "family": "translation", "d": d}, compute))
        out.append(TightnessCell("d (attained)", d, {**shift, "family": "attained", "d": d}, compute))
    out += [TightnessCell("d_k (translation)", dk, {**shift, "family": "translation", "dk": dk}, compute)
            for dk in c["dk"]]
    return out


FAMILIES = ("translation", "scale", "attained")


def fits(records: list[dict], bootstrap: Bootstrap) -> dict:
    """``||ΔW||_HS`` and its bound against t, per family: log-log slopes with bootstrap CIs (the same draws at
    every t, so the draws are resampled jointly across t), and both slopes in t itself at the smallest t."""
    out = {}
    for fam in FAMILIES:
        fc = points(records, f"t ({fam})")
        if len(fc) < 2:
            continue
        ts = np.log([r["value"] for r in fc])
        obs = np.array([r["raw"]["observed"] for r in fc])   # (t, draws)
        bnd = np.array([r["raw"]["bound"] for r in fc])
        idx = bootstrap.indices(f"thm-4.1/{fam}", obs.shape[1], 0)
        f_obs = [ols_slope(ts, np.log(obs[:, i].mean(axis=1))) for i in idx]
        f_bnd = [ols_slope(ts, np.log(bnd[:, i].mean(axis=1))) for i in idx]
        out[f"thm-4.1 ({fam})"] = {
            "x": "log t", "y": "log mean ||ΔW||_HS", "t": np.exp(ts).tolist(),
            "slope": ols_slope(ts, np.log(obs.mean(axis=1))), "slope_lo": bootstrap.ci(f_obs)[0],
            "slope_hi": bootstrap.ci(f_obs)[1], "bound_slope": ols_slope(ts, np.log(bnd.mean(axis=1))),
            "bound_slope_lo": bootstrap.ci(f_bnd)[0], "bound_slope_hi": bootstrap.ci(f_bnd)[1],
            # the slope in t itself (not log-log): d||ΔW||/dt at the smallest t, observed <= bound
            "dw_over_t_smallest_t": float(obs[0].mean() / np.exp(ts[0])),
            "bound_over_t_smallest_t": float(bnd[0].mean() / np.exp(ts[0])), "bootstrap": bootstrap.resamples}
    return out


def figure(rows: list[dict], slopes: dict, plot) -> None:
    """``||ΔW||_HS`` and its bound against t, one colour per family (log-log)."""
    fams = [f for f in FAMILIES if points(rows, f"t ({f})")]
    if not fams:
        return
    fig, ax = plot.subplots(figsize=(6.4, 4.4))
    for i, fam in enumerate(fams):
        s = points(rows, f"t ({fam})")
        sl = slopes.get(f"thm-4.1 ({fam})", {})
        plot.band(ax, s, f"‖ΔW‖ {fam} (slope {sl.get('slope', float('nan')):.2f})", f"C{i}")
        ax.plot([r["value"] for r in s], [r["bound"] for r in s], "--", color=f"C{i}",
                label=f"bound {fam} (slope {sl.get('bound_slope', float('nan')):.2f})")
    plot.axes(ax, "shift t (translation length / scale change 1+t)", "‖ΔW‖_HS vs 2η‖W^V‖_op MMD_k (value units)",
              "Theorem 4.1 along shift families (mean over coupled draws)")
    plot.save(fig)
