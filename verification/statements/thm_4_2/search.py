"""Theorem 4.2's search targets (docs/statements.md#thm-4-2), run by ``iclkd search thm-4.2``.

* ``thm-4.2/prediction``: ``||f_S(x; W̄(𝒬)) - f_S(x; W̄(𝒟))|| / (2 eta ||W^V||_op MMD_k e^{||W^K x||^2/2})``
  over the maps, both samples and the query ``x``.
* ``thm-4.2/risk``: ``|L(W̄(𝒬)) - L(W̄(𝒟))| / (2 (T + BC) C ||ΔW||_HS)`` on the empirical measure of a
  reference sample (also searched), ``T``, ``C``, ``B`` the exact sups (as in the check), and ``eta``.
* ``thm-4.2/risk-frontier``: the risk ratio over the sharper frontier
  ``F = h(delta) / (2 (T + beta) delta)``, ``delta = C ||ΔW||``, ``beta = BC``,
  ``h(delta) = 2 delta T + 2 beta delta - delta^2`` (``delta <= beta``), ``2 delta T + beta^2`` (else),
  i.e. ``F = 1 - delta / (2 (T + BC))`` when ``delta <= BC`` (derived in docs/search.md); <= 1 if the
  derivation is right, and the ``(2+rho)/(2+2rho)`` configuration of the check lies on it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from verification.oracles import reference
from verification.search.ascent import SearchTarget
from verification.search.objectives import (
    as_arrays,
    as_lists,
    log_dw_and_mmd,
    log_floor,
    log_op_norm,
    one_case_batch,
    relative,
    shift_init,
    shift_parts,
    shift_project,
)
from verification.statements.thm_4_2.check import Cases42, judge

#: (d, d_k, d_v, n, m): the check's first shape (d = d_k + d_v, as in its attained configuration)
SHAPE_42 = (4, 2, 2, 4, 4)
REFERENCE_ROWS = 4


def _predictions(p, points, log_2eta=0.0):
    """``(W̄(𝒬) - W̄(𝒟)) phi(W^K x)`` at rows ``x`` of ``points`` as ``(log scale, unit-scaled vectors)``."""
    _, coef, keys, values = shift_parts(p)
    logits = (points @ p["wk"].T) @ keys.T                       # (r, n + m)
    top = jax.lax.stop_gradient(jnp.max(logits, axis=1, keepdims=True))
    return log_2eta + top[:, 0], (jnp.exp(logits - top) * coef[None, :]) @ values


def _prediction_log_ratio(p):
    """Theorem 4.2 (i), the end of the chain: shift / (2 eta ||W^V||_op MMD_k exp(||W^K x||^2 / 2))."""
    log_scale, vectors = _predictions(p, p["query"])
    _, log_mmd = log_dw_and_mmd(p)
    qk = p["query"] @ p["wk"].T
    log_phi = 0.5 * jnp.sum(qk * qk, axis=1)
    return jnp.max(log_scale + log_floor(jnp.linalg.norm(vectors, axis=1)) - log_phi) - log_mmd - log_op_norm(p["wv"])


def risk_parts(p):
    """Theorem 4.2 (ii) on the reference sample: ``|ΔL|``, ``T``, ``C``, ``B``, ``||ΔW||`` (all jnp, in scale)."""
    prompt, target, ref = p["prompt"], p["target"], p["reference"]
    wk, wv, log_2eta = p["wk"], p["wv"], p["log_2eta"]
    two_eta = jnp.exp(log_2eta)
    rk = ref @ wk.T
    t = ref @ wv.T

    def apply(tokens):
        keys, values = tokens @ wk.T, tokens @ wv.T
        return two_eta * (jnp.exp(rk @ keys.T) @ values) / tokens.shape[0]

    def hs(tokens):
        keys, values = tokens @ wk.T, tokens @ wv.T
        n = tokens.shape[0]
        return two_eta * jnp.sqrt(jnp.maximum(jnp.sum((values @ values.T) * jnp.exp(keys @ keys.T)), 0.0)) / n

    a, b = apply(prompt), apply(target)
    risk_q = jnp.mean(jnp.sum((t - a) ** 2, axis=1))
    risk_d = jnp.mean(jnp.sum((t - b) ** 2, axis=1))
    _, coef, keys, values = shift_parts(p)
    dw = two_eta * jnp.sqrt(jnp.maximum(coef @ ((values @ values.T) * jnp.exp(keys @ keys.T)) @ coef, 0.0))
    big_t = jnp.max(jnp.linalg.norm(t, axis=1))
    big_c = jnp.exp(0.5 * jnp.max(jnp.sum(rk * rk, axis=1)))
    big_b = jnp.maximum(hs(prompt), hs(target))
    return {"risk_diff": jnp.abs(risk_q - risk_d), "T": big_t, "C": big_c, "B": big_b, "dw": dw}


def risk_ratio(parts):
    """Theorem 4.2 (ii), first inequality: ``|ΔL| / (2 (T + BC) C ||ΔW||)``."""
    return parts["risk_diff"] / (2.0 * (parts["T"] + parts["B"] * parts["C"]) * parts["C"] * parts["dw"])


def risk_frontier(t, beta, delta):
    """``h(delta) / (2 (T + beta) delta)``: the largest ``|ΔL| / (2(T + beta) delta)`` compatible with
    ``||t|| <= T``, ``||a||, ||b|| <= beta``, ``||a - b|| <= delta`` (docs/search.md); works on floats and jnp."""
    h = jnp.where(delta <= beta, 2 * delta * t + 2 * beta * delta - delta**2, 2 * delta * t + beta**2)
    return h / (2.0 * (t + beta) * delta)


def configuration_ratio(rho):
    """The check's attained configuration (docs/statements.md#thm-4-2, Theorem 4.2): risk ratio ``(2 + rho) / (2 + 2 rho)``."""
    return (2.0 + rho) / (2.0 + 2.0 * rho)


def _risk_log_ratio(p):
    return log_floor(risk_ratio(risk_parts(p)))


def _frontier_log_ratio(p):
    parts = risk_parts(p)
    frontier = risk_frontier(parts["T"], parts["B"] * parts["C"], parts["C"] * parts["dw"])
    return log_floor(risk_ratio(parts)) - log_floor(frontier)


def reference_42(q, queries, ref_tokens, log_eta: float) -> dict:
    """Theorem 4.2 from the independent NumPy reference: prediction ratio (end of the chain) at the worst query,
    risk ratio (first inequality) on ``ref_tokens``, and ``T``, ``C``, ``B``, ``||ΔW||``."""
    wk, wv, target, prompt = q["wk"], q["wv"], q["target"], q["prompt"]
    log_hs2 = reference.log_hs_norm2(*reference.weight_difference(wk, wv, target, prompt, log_eta)).log_abs
    dw = math.exp(0.5 * float(log_hs2))
    sign, log_mmd2, _, _ = reference.log_mmd2(target, prompt, "product", wk=wk)
    mmd = math.exp(0.5 * float(log_mmd2)) if sign > 0 else 0.0
    shift = (reference.distilled_prediction(wk, wv, prompt, log_eta, queries)
             - reference.distilled_prediction(wk, wv, target, log_eta, queries))
    qk = queries @ wk.T
    pred_bound = 2.0 * math.exp(log_eta) * float(reference.operator_norm(wv)) * mmd * np.exp(0.5 * np.sum(qk * qk, 1))
    rk = ref_tokens @ wk.T
    big_t = float(np.max(np.linalg.norm(ref_tokens @ wv.T, axis=1)))
    big_c = math.exp(0.5 * float(np.max(np.sum(rk * rk, axis=1))))

    def hs(tokens):
        n = tokens.shape[0]
        log_value = reference.log_hs_norm2(np.full(n, 1.0 / n), tokens @ wv.T, tokens @ wk.T,
                                           math.log(2.0) + log_eta).log_abs
        return math.exp(0.5 * float(log_value))

    big_b = max(hs(prompt), hs(target))
    risk_diff = abs(float(reference.kd_risk(wk, wv, prompt, log_eta, ref_tokens))
                    - float(reference.kd_risk(wk, wv, target, log_eta, ref_tokens)))
    return {"prediction_ratio": float(np.max(np.linalg.norm(shift, axis=1) / pred_bound)),
            "risk_ratio": risk_diff / (2.0 * (big_t + big_b * big_c) * big_c * dw),
            "T": big_t, "C": big_c, "B": big_b, "norm_dw": dw}


def targets(shape=SHAPE_42) -> list[SearchTarget]:
    def measured(q, queries, reference_tokens, log_eta):
        cases = Cases42(one_case_batch(q, log_eta), np.asarray(queries)[None], np.asarray(reference_tokens)[None])
        return judge(cases, None, chunk=1)

    def remeasure_prediction(p):
        q = as_arrays(p)
        judged = measured(q, q["query"], q["target"], math.log(0.5))
        hs_chain, mmd_chain = (float(r[0].max()) for r in judged.prediction_ratios)
        ref = reference_42(q, q["query"], q["target"], math.log(0.5))["prediction_ratio"]
        return {"ratio": mmd_chain, "ratio_hs_chain": hs_chain, "tolerance": float(judged.tolerance[0]),
                "library_vs_reference_in_round_off_units": float(judged.agreement_score[0]),
                "reference_ratio": ref, "reference_agreement": relative(mmd_chain, ref),
                "measured_by": "verification.statements.thm_4_2.check.judge"}

    def risk_figures(q):
        log_eta = float(q["log_2eta"]) - math.log(2.0)
        judged = measured(q, q["reference"], q["reference"], log_eta)
        hs_chain, mmd_chain = (float(r[0]) for r in judged.risk_ratios)
        ref = reference_42(q, q["reference"], q["reference"], log_eta)
        beta, delta = ref["B"] * ref["C"], ref["C"] * ref["norm_dw"]
        r = delta / (ref["T"] + beta)
        # the configuration at the same relative shift: delta = beta = rho T there, so r = rho / (1 + rho)
        rho = r / (1.0 - r) if r < 1 else math.inf
        return {"ratio_hs_chain": hs_chain, "ratio_mmd_chain": mmd_chain, "tolerance": float(judged.tolerance[0]),
                "library_vs_reference_in_round_off_units": float(judged.agreement_score[0]),
                "reference_ratio": ref["risk_ratio"], "reference_agreement": relative(hs_chain, ref["risk_ratio"]),
                "relative_shift_r": r, "delta_over_beta": delta / beta,
                "frontier": float(risk_frontier(ref["T"], beta, delta)), "configuration_rho": rho,
                "configuration_ratio_at_r": configuration_ratio(rho) if math.isfinite(rho) else 0.5,
                "T": ref["T"], "C": ref["C"], "B": ref["B"], "norm_dw": ref["norm_dw"],
                "measured_by": "verification.statements.thm_4_2.check.judge (T, C, B, ||ΔW||: the oracles' reference)"}

    def remeasure_risk(p):
        figures = risk_figures(as_arrays(p))
        return {"ratio": figures["ratio_hs_chain"], **figures}

    def remeasure_frontier(p):
        figures = risk_figures(as_arrays(p))
        return {"ratio": figures["ratio_hs_chain"] / figures["frontier"], **figures}

    def describe(p):
        out = as_lists(p)
        out["eta"] = 0.5 * math.exp(float(p["log_2eta"])) if "log_2eta" in p else 0.5
        return out

    prediction = SearchTarget(
        name="thm-4.2/prediction",
        description="prediction shift / (2 eta ||W^V||_op MMD_k exp(||W^K x||^2/2)) over W^K, W^V, 𝒟, 𝒬, x",
        init=shift_init(shape, query_rows=1), objective=lambda p: jnp.exp(_prediction_log_ratio(p)),
        log_objective=_prediction_log_ratio, project=shift_project, remeasure=remeasure_prediction,
        describe=describe)
    risk = SearchTarget(
        name="thm-4.2/risk",
        description="|L(W̄(𝒬)) - L(W̄(𝒟))| / (2(T+BC) C ||ΔW||_HS) over W^K, W^V, eta, 𝒟, 𝒬, reference sample",
        init=shift_init(shape, reference_rows=REFERENCE_ROWS, eta=True),
        objective=lambda p: jnp.exp(_risk_log_ratio(p)), log_objective=_risk_log_ratio, project=shift_project,
        remeasure=remeasure_risk, describe=describe)
    frontier = SearchTarget(
        name="thm-4.2/risk-frontier",
        description="the risk ratio over the sharp frontier 1 - C||ΔW|| / (2(T+BC)) (<= 1; docs/search.md)",
        init=shift_init(shape, reference_rows=REFERENCE_ROWS, eta=True),
        objective=lambda p: jnp.exp(_frontier_log_ratio(p)), log_objective=_frontier_log_ratio,
        project=shift_project, remeasure=remeasure_frontier, describe=describe,
        ratio_label="risk ratio / frontier")
    return [prediction, risk, frontier]
