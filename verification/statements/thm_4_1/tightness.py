"""Theorem 4.1's tightness cells (docs/statements.md#thm-4-1; ``iclkd bench tightness``, docs/tightness.md)."""

from __future__ import annotations

import numpy as np

from verification.cases.sweeps import (
    SHIFT_BASE,
    shift_draws,
    stat_row,
)
from verification.core.protocol import TightnessCell


def compute(spec: dict, seed: int) -> dict:
    out, consts = shift_draws(spec, seed)
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
