"""Theorem 4.2's tightness cells (docs/statements.md#thm-4-2; ``iclkd bench tightness``, docs/tightness.md)."""

from __future__ import annotations

import math

import numpy as np

from verification.cases.sweeps import (
    SHIFT_BASE,
    points,
    shift_draws,
    stat_row,
)
from verification.core.protocol import TightnessCell
from verification.statements.thm_4_1.tightness import SHIFT_STREAM  # swept on Theorem 4.1's samples


def compute(spec: dict, seed: int) -> dict:
    out, consts = shift_draws(spec, seed, SHIFT_STREAM)
    pred_b, risk_b = np.exp(out["log_pred_bound"]), np.exp(out["log_risk_bound"])
    rows = [stat_row("prediction shift ||f_S(x;W̄(Q)) - f_S(x;W̄(D))||", out["pred"], pred_b,
                      bound_hs_mean=float(np.mean(np.exp(out["log_pred_bound_hs"])))),
            stat_row("KD-risk shift |L(W̄(Q)) - L(W̄(D))|", out["risk"], risk_b,
                      bound_hs_mean=float(np.mean(np.exp(out["log_risk_bound_hs"]))), T=consts["T"],
                      C=math.exp(consts["log_C"]))]
    return {"rows": rows, "raw": {}}


#: the translations t of each mode
MODES = {"tiny": {"t": [0.1], "draws": 16, "n": 4}, "quick": {"t": [0.2, 0.05, 0.0125], "draws": 128, "n": 16},
         "full": {"t": [0.4, 0.1, 0.025, 0.00625], "draws": 512, "n": 32}}


def cells(mode: str) -> list[TightnessCell]:
    """Prediction and KD-risk shifts against their bounds, across the translation t."""
    c = MODES[mode]
    shift = dict(SHIFT_BASE, n=c["n"], draws=c["draws"])
    return [TightnessCell("t (translation)", t, {**shift, "family": "translation", "t": t}, compute) for t in c["t"]]


def figure(rows: list[dict], slopes: dict, plot) -> None:
    """The prediction and KD-risk shifts against their bounds, along the translation family (log-log)."""
    s_pred = points(rows, "t (translation)", "prediction")
    s_risk = points(rows, "t (translation)", "KD-risk")
    if not s_pred:
        return
    fig, ax = plot.subplots(figsize=(6.4, 4.4))
    for i, (s, name) in enumerate(((s_pred, "prediction shift"), (s_risk, "KD-risk shift"))):
        plot.band(ax, s, name, f"C{i}")
        ax.plot([r["value"] for r in s], [r["bound"] for r in s], "--", color=f"C{i}", label=f"{name} bound")
    plot.axes(ax, "shift t (translation length)", "|difference| (value units; risk: squared)",
              "Theorem 4.2: prediction and KD-risk shifts vs bounds")
    plot.save(fig)
