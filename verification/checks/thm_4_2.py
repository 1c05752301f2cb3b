"""thm-4.2: the weight shift bounds the prediction shift and the KD-risk shift (THEOREMS.md, Theorem 4.2).

Statement, with ``W̄(P) = 2 eta E_P[W^V x ⊗ phi(W^K x)]`` and ``ΔW = W̄(𝒬) - W̄(𝒟)``:

(i) for every query token x,
    ``||f_S(x; W̄(𝒬)) - f_S(x; W̄(𝒟))|| <= ||ΔW||_HS ||phi(W^K x)||
                                        <= 2 eta ||W^V||_op MMD_k(𝒟, 𝒬) exp(||W^K x||^2 / 2)``;
(ii) with ``||W^V x|| <= T``, ``||phi(W^K x)|| <= C`` on the support of the risk's measure and
    ``B >= ||W̄(𝒬)||_HS, ||W̄(𝒟)||_HS``,
    ``|L(W̄(𝒬)) - L(W̄(𝒟))| <= 2 (T + B C) C ||ΔW||_HS <= 4 eta (T + B C) C ||W^V||_op MMD_k``,
    ``L(W) = E_x ||W^V x - W phi(W^K x)||^2``.

The proof of (ii) is ``| ||t-a||^2 - ||t-b||^2 | <= ||a-b|| (||t-a|| + ||t-b||)`` with
``||a - b|| = ||ΔW phi|| <= ||ΔW|| C`` and ``||t - a|| <= T + B C``: it holds for any measure
on the support, so here deterministically for the empirical measure of a reference
sample (the target sample 𝒟: L is the risk on the target). T and C are the exact sups
over that support (the smallest constants the statement allows: the strongest test);
B is the larger of the two computed HS norms. Both weights are evaluated on the same
reference sample, as in the proof.

Measured per Hypothesis case: a random head on independent samples (general, loose)
and an attained configuration (``d = d_k + d_v``, ``W^K = [A, 0]``, ``W^V = [0, s O]``,
𝒟 = {(a, 0)}, 𝒬 = {(a, -rho u)}, query = reference = {(a, u)}, ``eta = exp(-||A a||^2)/2``):
(i) is an equality there (both inequalities), and (ii) has ratio ``(2 + rho)/(2 + 2 rho)``.

Tolerance: the prediction difference is a difference of two kernel sums, each with an
absolute round-off ``64 eps (1 + max|logit|) sum_i |c_i| ||v_i|| exp(k_i . k)``; the risk
difference carries ``64 eps (1 + max|logit|) mean (||t|| + ||a|| + ||b||)^2``; divided by the
bound and added to the relative tolerance of ``||ΔW||`` and MMD (thm-4.1).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

import iclkd_jax as ik
from verification.registry import Check, RunContext, register
from verification.search import explore
from verification.shift_cases import ShiftCase, operator_norm, shift_cases, weight_shift
from verification.strategies import standard_normal_pool
from verification.tolerances import eps

_OPS = 64.0
#: (d, d_k, d_v, n, m) with n = m (W̄(𝒬) and W̄(𝒟) share compilations); the first is also the attained
#: configuration's (d = d_k + d_v = 4, every point repeated n times)
SHAPES = ((4, 2, 2, 4, 4), (6, 3, 4, 8, 8))


def _log_sum_norms(values, keys, z, log_scale):
    """``log sum_i ||v_i|| exp(k_i . z) + log_scale`` per row of ``z`` (the size of a kernel sum)."""
    logits = z @ keys.T + np.log(np.maximum(np.linalg.norm(values, axis=1), 1e-300))[None, :]
    top = logits.max(axis=1)
    return top + np.log(np.exp(logits - top[:, None]).sum(axis=1)) + log_scale


def shift_bounds(weights, target, prompt, queries, reference, log_eta, mutant=None) -> dict:
    """Theorem 4.2 (i) at every query and (ii) on the empirical measure of ``reference``."""
    wk, wv = (np.asarray(w, np.float64) for w in (weights.wk, weights.wv))
    t41 = weight_shift(weights, target, prompt, log_eta)
    log_dw, log_mmd, tol41 = t41.log_dw, t41.log_mmd, t41.tolerance
    log_2eta_mv = math.log(2.0) + log_eta + math.log(operator_norm(wv))
    w_q = ik.distilled_weights(weights, prompt, log_eta=log_eta)
    w_d = ik.distilled_weights(weights, target, log_eta=log_eta)
    # (i) predictions at the queries
    pred = np.asarray(ik.student(w_q, weights, queries)) - np.asarray(ik.student(w_d, weights, queries))
    diff = np.linalg.norm(pred, axis=1)
    qkeys = np.asarray(queries) @ wk.T
    log_phi = 0.5 * np.sum(qkeys * qkeys, axis=1)          # log ||phi(W^K x)||
    if mutant == "quarter-exponent":
        log_phi = 0.5 * log_phi
    elif mutant == "no-feature-norm":
        log_phi = np.zeros_like(log_phi)
    tokens = [np.asarray(a, np.float64) for a in (prompt, target)]
    key_sets = [a @ wk.T for a in tokens]
    log_size = np.logaddexp(*(_log_sum_norms(a @ wv.T, k, qkeys, math.log(2.0) + log_eta - math.log(a.shape[0]))
                              for a, k in zip(tokens, key_sets)))
    max_logit = max(float(np.max(np.abs(qkeys @ k.T))) for k in key_sets)
    log_err = math.log(_OPS * eps(np.float64) * (1.0 + max_logit)) + log_size
    preds = []
    for chain, log_factor in (("hs", log_dw), ("mmd", log_2eta_mv + log_mmd)):
        log_bound = log_factor + log_phi
        ratio = diff / np.exp(log_bound)
        tol = np.exp(log_err - log_bound) + tol41
        preds.append({"chain": chain, "ratio": float(ratio.max()), "score": float(np.max((ratio - 1.0) / tol)),
                      "tolerance": float(tol.max())})
    # (ii) KD risk on the reference's empirical measure, both weights on the same sample
    reference = np.asarray(reference, np.float64)
    rkeys = reference @ wk.T
    with np.errstate(divide="ignore"):
        log_t = float(np.log(np.max(np.linalg.norm(reference @ wv.T, axis=1))))
    log_c = 0.5 * float(np.max(np.sum(rkeys * rkeys, axis=1)))
    hs_q, hs_d = float(ik.hs_norm(w_q).log_value), float(ik.hs_norm(w_d).log_value)
    log_b = 0.5 * (hs_d if mutant == "B-target-only" else max(hs_q, hs_d))
    risk_q = float(ik.kd_risk(w_q, weights, reference))
    risk_d = float(ik.kd_risk(w_d, weights, reference))
    risk_diff = abs(risk_q - risk_d)
    a = np.linalg.norm(np.asarray(ik.student(w_q, weights, reference)), axis=1)
    b = np.linalg.norm(np.asarray(ik.student(w_d, weights, reference)), axis=1)
    t = np.linalg.norm(reference @ wv.T, axis=1)
    max_logit_r = max(float(np.max(np.abs(rkeys @ k.T))) for k in key_sets)
    err_risk = _OPS * eps(np.float64) * (1.0 + max_logit_r) * float(np.mean((t + a + b) ** 2))
    log_tbc = float(np.logaddexp(log_t, log_b + log_c))
    log_two = 0.0 if mutant == "drop-factor-2" else math.log(2.0)
    log_c_factor = 0.0 if mutant == "drop-C" else log_c
    risks = []
    for chain, log_factor in (("hs", log_dw), ("mmd", log_2eta_mv + log_mmd)):
        log_bound = log_two + log_tbc + log_c_factor + log_factor
        bound = math.exp(log_bound)
        ratio = risk_diff / bound if bound > 0 else (0.0 if risk_diff == 0 else math.inf)
        tol = (err_risk / bound if bound > 0 else math.inf) + tol41
        risks.append({"chain": chain, "ratio": ratio, "score": (ratio - 1.0) / tol, "tolerance": tol})
    return {"prediction": preds, "risk": risks, "risk_diff": risk_diff,
            "score": max(m["score"] for m in preds + risks), "max_logit": max(max_logit, max_logit_r)}


@dataclasses.dataclass(frozen=True)
class TightCase:
    """The attained configuration of the module docstring (``d_k = d_v = 2``, ``d = 4``)."""

    seed: int
    rows: int       # every point repeated: the same empirical measures, the general case's array shapes
    kappa2: float   # ||W^K x||^2 at the query
    rho: float      # ||a - b|| / T, the size of the shift
    value_scale: float

    def build(self):
        p = standard_normal_pool(self.seed, 14)
        a_mat, a_vec, o_mat, u = p[:4].reshape(2, 2), p[4:6], p[6:10].reshape(2, 2), p[10:12]
        a_vec, u = a_vec / np.linalg.norm(a_vec), u / np.linalg.norm(u)
        a_mat = a_mat * math.sqrt(self.kappa2) / np.linalg.norm(a_mat @ a_vec)
        o_mat, _ = np.linalg.qr(o_mat)
        zeros = np.zeros((2, 2))
        wk = np.hstack([a_mat, zeros])
        wv = np.hstack([zeros, self.value_scale * o_mat])
        repeat = lambda row: np.tile(row, (self.rows, 1))  # noqa: E731
        target = repeat(np.concatenate([a_vec, [0.0, 0.0]]))
        prompt = repeat(np.concatenate([a_vec, -self.rho * u]))
        query = repeat(np.concatenate([a_vec, u]))
        as_jax = lambda x: jnp.asarray(x, jnp.float64)  # noqa: E731
        weights = ik.AttentionWeights(as_jax(wk), as_jax(wk), as_jax(wv))
        return weights, as_jax(target), as_jax(prompt), as_jax(query), -self.kappa2 - math.log(2.0)


@dataclasses.dataclass(frozen=True)
class Case42:
    general: ShiftCase
    tight: TightCase

    def describe(self) -> dict:
        return dataclasses.asdict(self)


def cases_4_2():
    tight = st.builds(TightCase, seed=st.integers(0, 2**31 - 1), rows=st.just(SHAPES[0][3]),
                      kappa2=st.floats(1.0, 6.0), rho=st.floats(0.01, 0.3), value_scale=st.floats(0.5, 2.0))
    return st.builds(Case42, general=shift_cases(max_scale=4.0, shapes=SHAPES), tight=tight)


def _queries(case: ShiftCase) -> jnp.ndarray:
    """As many queries as target points: the student is then compiled for one shape per case shape."""
    d, m = case.shape[0], case.shape[4]
    return jnp.asarray(standard_normal_pool(case.seed ^ 0x5EED, m * d).reshape(m, d))


@register
class Theorem42(Check):
    id = "thm-4.2"
    kind = "theorem"
    title = "prediction shift <= ||ΔW|| ||phi(W^K x)||; KD-risk shift <= 2(T+BC) C ||ΔW|| (exact on samples)"
    mutants = {
        "quarter-exponent": "||phi(W^K x)|| taken as exp(||W^K x||^2/4) instead of exp(||W^K x||^2/2)",
        "no-feature-norm": "the factor ||phi(W^K x)|| dropped from the prediction bound",
        "drop-factor-2": "the risk bound (T + BC) C ||ΔW|| without its factor 2",
        "drop-C": "the risk bound 2 (T + BC) ||ΔW|| without the factor C",
        "B-target-only": "B = ||W̄(𝒟)||_HS only (the assumption B >= both norms broken)",
    }

    def run(self, ctx: RunContext):
        def measure(case: Case42):
            general, _, target, prompt, _, _ = case.general.build()
            # the risk on the target's empirical measure (L is the target risk)
            g = shift_bounds(general, target, prompt, _queries(case.general), target, case.general.log_eta,
                             ctx.mutant)
            weights, target, prompt, query, log_eta = case.tight.build()
            t = shift_bounds(weights, target, prompt, query, query, log_eta, ctx.mutant)
            return {"general": g, "tight": t, "score": max(g["score"], t["score"])}

        exploration = explore(cases_4_2(), measure, max_examples=ctx.profile.examples * 2,
                              seed_value=ctx.hypothesis_seed, fails=lambda m: m["score"] > 1.0, shrink=ctx.shrink)
        records = exploration.measurements
        singles = [m[k] for m in records for k in ("general", "tight")]
        worst_pred = max(p["ratio"] for m in singles for p in m["prediction"])
        worst_risk = max(r["ratio"] for m in singles for r in m["risk"])
        tight_pred = [m["tight"]["prediction"][0]["ratio"] for m in records]
        tight_chain = [m["tight"]["prediction"][1]["ratio"] for m in records]
        tight_risk = [m["tight"]["risk"][0]["ratio"] for m in records]
        status = "violated" if exploration.counterexample else "holds"
        counterexample = None
        if exploration.counterexample:
            case, m = exploration.counterexample
            counterexample = {"case": case.describe(), "general": m["general"], "tight": m["tight"]}
        worst = max(worst_pred, worst_risk)
        tightest = max(tight_pred)
        return self.result(
            ctx, status=status, cases=len(singles), worst=worst, worst_label="max observed / bound (predictions, risk)",
            tolerance=1.0 + max(x["tolerance"] for m in singles for x in m["prediction"] + m["risk"]),
            tolerance_reason="per case: round-off of the two kernel sums (prediction) or of the two risks, "
                             "64 eps (1 + max|logit|) x their size, over the bound, plus thm-4.1's tolerance",
            tightness=1.0 / tightest if tightest > 0 else None,
            figures={
                "max_ratio_prediction": worst_pred,
                "max_ratio_risk": worst_risk,
                "max_ratio_prediction_random": max(p["ratio"] for m in records for p in m["general"]["prediction"]),
                "max_ratio_risk_random": max(r["ratio"] for m in records for r in m["general"]["risk"]),
                "max_abs_tight_prediction_minus_1": max(abs(r - 1.0) for r in tight_pred),
                "max_abs_tight_chain_minus_1": max(abs(r - 1.0) for r in tight_chain),
                "max_tight_risk_ratio": max(tight_risk),
                "max_logit": max(m["max_logit"] for m in singles),
            },
            counterexample=counterexample,
            summary=(f"{status}: prediction shift/bound <= {worst_pred:.6g} (attained: |ratio-1| <= "
                     f"{max(abs(r - 1.0) for r in tight_pred):.1e}), risk shift/bound <= {worst_risk:.4g} "
                     f"(attained configuration up to {max(tight_risk):.4g} = (2+rho)/(2+2rho))"))
