"""Conjecture 4.1's tightness cells (docs/statements.md#conj-4-1; ``iclkd bench tightness``, docs/tightness.md)."""

from __future__ import annotations

import numpy as np

from verification.cases.sweeps import (
    SHIFT_BASE,
    shift_draws,
)
from verification.core.protocol import TightnessCell
from verification.statements.thm_4_1.tightness import SHIFT_STREAM  # swept on Theorem 4.1's samples


def compute(spec: dict, seed: int) -> dict:
    """The constant ``sup ||ΔW|| / MMD_rbf(σ)`` found, per bandwidth σ (no bound: Conjecture 4.1')."""
    bws = tuple(spec["bandwidths"])
    out, _ = shift_draws(spec, seed, SHIFT_STREAM, bws)
    dw = np.exp(out["log_dw"])
    rows = []
    for i, bw in enumerate(bws):
        ratio = dw / out[f"mmd_rbf_{i}"]
        rows.append({"parameter": "bandwidth", "value": bw, "quantity": "max over draws of ||ΔW|| / MMD_rbf",
                     "bound": None, "observed": float(ratio.max()), "median_ratio": float(np.median(ratio)),
                     "draws": int(ratio.size)})
    return {"rows": rows, "raw": {}}


#: the RBF bandwidths of each mode (the tiny mode has none: no cell)
MODES = {"tiny": {"bandwidths": [], "draws": 16, "n": 4},
         "quick": {"bandwidths": [0.1, 0.3, 1.0, 3.0, 10.0, 30.0], "draws": 128, "n": 16},
         "full": {"bandwidths": [0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0], "draws": 512, "n": 32}}


def cells(mode: str) -> list[TightnessCell]:
    """The sup of ||ΔW|| / MMD_rbf found, across RBF bandwidths (no bound)."""
    c = MODES[mode]
    if not c["bandwidths"]:
        return []
    spec = dict(SHIFT_BASE, n=c["n"], draws=c["draws"], family="translation", bandwidths=c["bandwidths"])
    return [TightnessCell("bandwidth", None, spec, compute, kind="conjecture")]
