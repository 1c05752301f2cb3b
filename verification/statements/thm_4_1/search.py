"""Theorem 4.1's search target (docs/statements.md#thm-4-1), run by ``iclkd search thm-4.1``.

``||ΔW||_HS / (2 eta ||W^V||_op MMD_k)`` over ``W^K``, ``W^V`` and the two samples (tokens in a ball); 1 is
attained by isometric ``W^V``, which the search is not told. ``remeasure`` hands the best case to the check's
own ``judge`` and to the independent reference; their ``agreement`` is reported.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from verification.oracles import reference
from verification.search.ascent import SearchTarget
from verification.search.objectives import (
    as_arrays,
    as_lists,
    log_dw_and_mmd,
    log_op_norm,
    one_case_batch,
    relative,
    shift_init,
    shift_project,
)
from verification.statements.thm_4_1.check import judge

#: (d, d_k, d_v, n, m) of the searched samples; d_v > d so an isometric W^V exists, n != m
SHAPE_41 = (3, 2, 4, 4, 5)

def _reference_ratio_41(q) -> float:
    """Theorem 4.1's ratio from the independent NumPy reference (verification/oracles/reference.py)."""
    log_hs2 = reference.log_hs_norm2(*reference.weight_difference(q["wk"], q["wv"], q["target"], q["prompt"],
                                                                  math.log(0.5))).log_abs
    sign, log_mmd2, _, _ = reference.log_mmd2(q["target"], q["prompt"], "product", wk=q["wk"])
    if sign <= 0:
        return math.inf
    return math.exp(0.5 * float(log_hs2) - math.log(float(reference.operator_norm(q["wv"]))) - 0.5 * float(log_mmd2))


def targets(shape=SHAPE_41) -> list[SearchTarget]:
    def log_ratio(p):
        log_dw, log_mmd = log_dw_and_mmd(p)
        return log_dw - log_mmd - log_op_norm(p["wv"])

    def remeasure(p):
        q = as_arrays(p)
        judged = judge(one_case_batch(q, math.log(0.5)), None, attained=False, chunk=1)
        ratio = float(judged.ratio[0])
        s = np.linalg.svd(q["wv"], compute_uv=False)
        ref = _reference_ratio_41(q)
        return {"ratio": ratio, "tolerance": float(judged.ratio_tolerance[0]),
                "library_vs_reference_in_round_off_units": float(judged.agreement_score[0]),
                "reference_ratio": ref, "reference_agreement": relative(ratio, ref),
                "mmd_tilde": float(judged.mmd_tilde[0]), "wv_singular_values": s.tolist(),
                "max_logit": float(judged.max_logit[0]), "measured_by": "verification.statements.thm_4_1.check.judge"}

    return [SearchTarget(
        name="thm-4.1", description="||ΔW||_HS / (2 eta ||W^V||_op MMD_k) over W^K, W^V, 𝒟, 𝒬 (tokens in a ball)",
        init=shift_init(shape), objective=lambda p: jnp.exp(log_ratio(p)), log_objective=log_ratio,
        project=shift_project, remeasure=remeasure, describe=lambda p: {**as_lists(p), "eta": 0.5},
        learning_rate=0.05)]
