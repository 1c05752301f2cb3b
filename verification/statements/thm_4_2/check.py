"""thm-4.2: the weight shift bounds the prediction shift and the KD-risk shift (docs/statements.md#thm-4-2, Theorem 4.2).

Statement, with ``W̄(P) = 2 eta E_P[W^V x ⊗ phi(W^K x)]`` and ``ΔW = W̄(𝒬) - W̄(𝒟)``:

(i) for every query token x,
    ``||f_S(x; W̄(𝒬)) - f_S(x; W̄(𝒟))|| <= ||ΔW||_HS ||phi(W^K x)||
                                        <= 2 eta ||W^V||_op MMD_k(𝒟, 𝒬) exp(||W^K x||^2 / 2)``;
(ii) with ``||W^V x|| <= T``, ``||phi(W^K x)|| <= C`` on the support of the risk's measure and
    ``B >= ||W̄(𝒬)||_HS, ||W̄(𝒟)||_HS``,
    ``|L(W̄(𝒬)) - L(W̄(𝒟))| <= 2 (T + B C) C ||ΔW||_HS <= 4 eta (T + B C) C ||W^V||_op MMD_k``,
    ``L(W) = E_x ||W^V x - W phi(W^K x)||^2``.

(ii) holds for any measure on the support, so here deterministically for the empirical measure of a
reference sample (the target 𝒟: L is the risk on the target). T and C are the exact sups over that
support (the smallest constants the statement allows: the strongest test); B is the larger of the two
library HS norms.

Cases: (a) random heads on independent samples: batches of the shapes of thm-4.1 drawn with
``jax.random`` (:func:`verification.cases.shift_cases.draw_shift_batches`), ``m`` fresh standard normal queries;
(b) the attained configuration (``d = 4``, ``W^K = [A, 0]``, ``W^V = [0, s O]``, 𝒟 = {(a, 0)}, 𝒬 = {(a, -rho u)},
query = reference = {(a, u)}, ``eta = exp(-||A a||^2)/2``), drawn in batches too: (i) is an equality there
(both inequalities) and (ii) has ratio exactly ``(2 + rho)/(2 + 2 rho)``. The library runs under ``jax.vmap``
(:func:`verification.cases.shift_cases.library_shift`, the program thm-4.1 compiles, shared), the float64
reference batched in NumPy. Hypothesis adds edge cases of (a) with shrinking.

Judged per case (each a violation): the library equals the reference (prediction shifts, both KD risks,
``||W̄(𝒬)||^2``, ``||W̄(𝒟)||^2``, ``||ΔW||^2``, ``MMD_k^2``); both inequalities of (i) at every query and of
(ii); for (b), ``|ratio - 1|`` for both (i) ratios and ``|ratio - (2+rho)/(2+2rho)|`` for (ii), two-sided.

Tolerance: the prediction difference is a difference of two kernel sums, each with an absolute round-off
``64 eps (1 + max|logit|) sum_i |c_i| ||v_i|| exp(k_i . k)``; the risk difference carries
``64 eps (1 + max|logit|) mean (||t|| + ||a|| + ||b||)^2``; divided by the bound and added to the relative
tolerance of ``||ΔW||`` and MMD (thm-4.1), and for the risk the relative error ``u cond_B`` of ``B`` (its one-step
norms are double sums too; ``u = 64 eps (1 + max logit)``). Library and reference agree within the same absolute
budgets. These relative tolerances are first-order bounds, rigorous while every ``u cond <= 1/2``
(:func:`verification.cases.shift_cases.resolved_intervals` derives it); past that a double sum is below its round-off
resolution (its library value may even be <= 0, and a bound of exactly 0 would make a true inequality look
failed), so the case is judged on absolute intervals instead, one-sided and with no tolerance:
``max(observed - its budget, 0)`` over the bound from ``lib + u sum|terms|`` of ``||ΔW||^2``, ``MMD^2`` and ``B^2``
(times ``1 + u`` for ``||W^V||_op``, ``eta`` and ``phi``). That holds for every true case at any conditioning;
``figures["cases_below_round_off_resolution"]`` counts such cases. Norms of predictions are taken in log space or
scaled by their largest entry (:func:`verification.oracles.reference.vector_norm`): a shift of ``3e165`` is in range, its
squared entries are not. Cases that the float64 library cannot represent (a KD risk or a query's prediction beyond
float64, :func:`outside_float64_range`) are rejected by the generator, counted in ``figures["rejected_cases"]``.

``worst_case`` (for ``--certify``): the random case with the largest ratio (prediction or risk), keys
``wk, wv, target (m, d), prompt (n, d), log_eta`` (as thm-4.1), ``queries (Q, d)`` and ``reference (R, d)``
(the risk's sample, here the target); ``figures["worst_case_risk"]`` holds the random case with the largest
risk ratio in the same form.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import numpy as np

from verification.cases.explore import explore, reject
from verification.cases.shift_cases import (
    OPERATIONS,
    RESOLUTION,
    SHAPES,
    ShiftBatch,
    ShiftCase,
    agreement,
    draw_normals,
    draw_queries,
    draw_shift_batches,
    library_shift,
    log_agreement,
    log_reference_prediction_scale,
    map_batches,
    operator_norm_agreement,
    reference_prediction_scale,
    reference_weight_shift,
    resolved_intervals,
    shift_cases,
)
from verification.core.model import Check, RunContext, case_quantiles
from verification.core.tolerances import eps, require_finite
from verification.oracles import reference as ref

CASES_PER_SHAPE, SMOKE_CASES = 1024, 128
TIGHT_SHAPE = SHAPES[1]  # (d, d_k, d_v, n, m) = (4, 2, 2, 4, 4): the attained configuration, every point repeated


@dataclasses.dataclass(frozen=True)
class Cases42:
    """A batch with its queries and reference sample (``(B, Q, d)``, ``(B, R, d)``), and the attained ``rho``."""

    batch: ShiftBatch
    queries: np.ndarray
    reference: np.ndarray
    rho: np.ndarray | None = None

    def case(self, i: int) -> dict:
        return {**self.batch.case(i), "queries": self.queries[i].tolist(), "reference": self.reference[i].tolist()}


def draw_tight_cases(key, size: int) -> Cases42:
    """``size`` attained configurations (module docstring): ``kappa2 = ||A a||^2 ~ U(1, 6)``, ``rho ~ U(0.01, 0.3)``,
    ``s ~ U(0.5, 2)``."""
    normal, uniform = draw_normals(key, size, 12, 3)
    kappa2, rho, s = 1.0 + 5.0 * uniform[:, 0], 0.01 + 0.29 * uniform[:, 1], 0.5 + 1.5 * uniform[:, 2]
    a_mat, a_vec = normal[:, :4].reshape(-1, 2, 2), normal[:, 4:6]
    o_mat, u = normal[:, 6:10].reshape(-1, 2, 2), normal[:, 10:12]
    a_vec = a_vec / np.linalg.norm(a_vec, axis=1, keepdims=True)
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    a_mat = a_mat * (np.sqrt(kappa2) / np.linalg.norm(np.einsum("bij,bj->bi", a_mat, a_vec), axis=1))[:, None, None]
    o_mat, _ = np.linalg.qr(o_mat)
    zeros = np.zeros((size, 2, 2))
    wk = np.concatenate([a_mat, zeros], axis=2)
    wv = np.concatenate([zeros, s[:, None, None] * o_mat], axis=2)
    rows = TIGHT_SHAPE[3]
    repeat = lambda r: np.repeat(r[:, None, :], rows, axis=1)  # noqa: E731
    target = repeat(np.concatenate([a_vec, np.zeros((size, 2))], axis=1))
    prompt = repeat(np.concatenate([a_vec, -rho[:, None] * u], axis=1))
    query = repeat(np.concatenate([a_vec, u], axis=1))
    batch = ShiftBatch(wk, wv, target, prompt, -kappa2 - math.log(2.0))
    return Cases42(batch, query, query, rho)


#: ``log`` of float64's largest value: the library returns the KD risk ``L`` itself, not its log
LOG_FLOAT64_MAX = math.log(float(np.finfo(np.float64).max))
#: why :func:`outside_float64_range` rejects a case (the keys of ``figures["rejected_cases"]``)
RISK_OUT_OF_RANGE = "KD risk beyond float64 (the library returns L, not log L)"
PREDICTION_OUT_OF_RANGE = "prediction beyond float64 at a query (the library returns f_S, not log f_S)"


def outside_float64_range(cases: Cases42) -> dict[str, np.ndarray]:
    """Per reason, the cases that the float64 library cannot represent (each case under its first reason only).

    The library's ``L(W̄(P)) = mean_r ||t_r - f_S(x_r)||^2`` (``t_r = W^V x_r``) sums ``R`` squared residuals before
    dividing by ``R``; each residual is at most ``T + A`` with ``T = max_r ||t_r||`` and ``A`` the largest
    :func:`~verification.cases.shift_cases.reference_prediction_scale` over the risk's sample (``>= ||f_S||``), so every
    intermediate is at most ``R (T + A + B)^2`` (``B`` the same for the other sample; the risk tolerance is
    ``64 eps (1 + logit)`` times that, far less). A case with ``2 R (T + A + B)^2`` beyond float64 (the factor 2
    for round-off) is outside what the float64 library can represent. The logits are capped at 500
    (:data:`~verification.cases.shift_cases.MAX_LOGIT`) but ``eta`` up to ``e^5`` and the square take the risk to ``e^1000``.

    The predictions at the queries, ``f_S(x; W̄(𝒬))`` and ``f_S(x; W̄(𝒟))``, are returned as vectors too: their
    entries and their difference are at most ``A_x + B_x`` (the same scales at the query ``x``), so a case with
    ``2 (A_x + B_x)`` beyond float64 at some query is rejected as well. The cap bounds the samples' logits only: a
    fresh query with ``||W^K x||^2`` near 1000 meets a key of norm ``sqrt(500)`` at a logit beyond 700.

    The generator rejects such cases (counted in ``figures["rejected_cases"]``) instead of judging an overflow;
    the check computes every norm and ratio of what remains in log space or scaled by its largest entry.
    """
    b = cases.batch
    with np.errstate(divide="ignore"):
        log_t = np.log(np.max(ref.vector_norm(np.einsum("bad,brd->bra", b.wv, cases.reference)), axis=-1))
    log_a = np.max(log_reference_prediction_scale(b.wk, b.wv, b.prompt, b.log_eta, cases.reference), axis=-1)
    log_b = np.max(log_reference_prediction_scale(b.wk, b.wv, b.target, b.log_eta, cases.reference), axis=-1)
    log_size = np.logaddexp(log_t, np.logaddexp(log_a, log_b))
    risk = math.log(2.0 * cases.reference.shape[1]) + 2.0 * log_size > LOG_FLOAT64_MAX
    log_pred = np.max(np.logaddexp(log_reference_prediction_scale(b.wk, b.wv, b.prompt, b.log_eta, cases.queries),
                                   log_reference_prediction_scale(b.wk, b.wv, b.target, b.log_eta, cases.queries)),
                      axis=-1)
    prediction = (math.log(2.0) + log_pred > LOG_FLOAT64_MAX) & ~risk
    return {RISK_OUT_OF_RANGE: risk, PREDICTION_OUT_OF_RANGE: prediction}


def in_float64_range(cases: Cases42) -> np.ndarray:
    """Per case: whether every quantity the library returns in linear scale is within float64's range
    (:func:`outside_float64_range`)."""
    return ~np.logical_or.reduce(list(outside_float64_range(cases).values()))


def rejection_counts(cases: Cases42, keep: np.ndarray) -> dict[str, int]:
    """``{reason: count}`` of the cases not kept, each under its first reason."""
    return {reason: int(np.sum(outside & ~keep)) for reason, outside in outside_float64_range(cases).items()}


def select(cases: Cases42, keep: np.ndarray) -> Cases42:
    b = cases.batch
    return Cases42(ShiftBatch(*(a[keep] for a in b.arrays())), cases.queries[keep], cases.reference[keep],
                   None if cases.rho is None else cases.rho[keep])


@dataclasses.dataclass(frozen=True)
class Judged42:
    """Per-case ratios and scores (``*_score`` <= 1 holds)."""

    prediction_ratio: np.ndarray       # max over queries and both chains of observed / bound
    prediction_ratios: tuple           # (hs chain (B, Q), mmd chain (B, Q))
    risk_ratio: np.ndarray             # max over both chains
    risk_ratios: tuple                 # (hs chain (B,), mmd chain (B,))
    bound_score: np.ndarray
    agreement_score: np.ndarray
    agreement_by_quantity: dict
    tolerance: np.ndarray
    max_logit: np.ndarray
    resolved: np.ndarray               # judged on relative tolerances; else on the certified intervals, one-sided

    @property
    def score(self) -> np.ndarray:
        return np.maximum(self.bound_score, self.agreement_score)


def judge(cases: Cases42, mutant: str | None, *, chunk: int) -> Judged42:
    b = cases.batch
    lib = map_batches(library_shift, b.arrays() + (cases.queries, cases.reference), chunk)
    refs = reference_weight_shift(b)
    f64 = eps(np.float64)
    # the reference side: predictions, risks, the one-step weights' HS norms
    pred_q = ref.distilled_prediction(b.wk, b.wv, b.prompt, b.log_eta, cases.queries)
    pred_d = ref.distilled_prediction(b.wk, b.wv, b.target, b.log_eta, cases.queries)
    size = (reference_prediction_scale(b.wk, b.wv, b.prompt, b.log_eta, cases.queries)
            + reference_prediction_scale(b.wk, b.wv, b.target, b.log_eta, cases.queries))
    qkeys = np.einsum("bkd,bqd->bqk", b.wk, cases.queries)
    tokens = np.concatenate([b.prompt, b.target], axis=1)
    keys = np.einsum("bkd,bid->bik", b.wk, tokens)
    max_logit_q = np.max(np.abs(np.einsum("bqk,bik->bqi", qkeys, keys)), axis=(1, 2))
    err_pred = OPERATIONS * f64 * (1.0 + max_logit_q)[:, None] * size                        # (B, Q)
    rkeys = np.einsum("bkd,brd->brk", b.wk, cases.reference)
    max_logit_r = np.max(np.abs(np.einsum("brk,bik->bri", rkeys, keys)), axis=(1, 2))
    # norms scaled by their largest entry (ref.vector_norm): np.linalg.norm squares first and overflows for
    # entries past 1.3e154, which predictions of up to e^700 reach
    t_r = ref.vector_norm(np.einsum("bad,brd->bra", b.wv, cases.reference))
    a_r = ref.vector_norm(ref.distilled_prediction(b.wk, b.wv, b.prompt, b.log_eta, cases.reference))
    b_r = ref.vector_norm(ref.distilled_prediction(b.wk, b.wv, b.target, b.log_eta, cases.reference))
    err_risk = OPERATIONS * f64 * (1.0 + max_logit_r) * np.mean((t_r + a_r + b_r) ** 2, axis=-1)
    log_risk_q = ref.log_kd_risk(b.wk, b.wv, b.prompt, b.log_eta, cases.reference)
    log_risk_d = ref.log_kd_risk(b.wk, b.wv, b.target, b.log_eta, cases.reference)
    case_of = cases.case
    require_finite({"library MMD_k^2": lib["mmd2"], "library prediction shift": lib["prediction_shift"],
                    "library KD risk L(W̄(𝒬))": lib["risk_q"], "library KD risk L(W̄(𝒟))": lib["risk_d"],
                    "reference predictions": pred_q - pred_d, "prediction round-off": err_pred,
                    "risk round-off": err_risk}, case_of,
                   logs={"library log ||ΔW||^2": lib["log_dw2"], "library log ||W̄(𝒬)||^2": lib["log_hs_q"],
                         "library log ||W̄(𝒟)||^2": lib["log_hs_d"], "reference log L(W̄(𝒬))": log_risk_q,
                         "reference log L(W̄(𝒟))": log_risk_d, "reference log ||ΔW||^2": refs.dw.log_abs,
                         "reference log MMD_k^2": refs.mmd2.log_abs})
    risk_q, risk_d = np.exp(log_risk_q), np.exp(log_risk_d)

    def one_step_hs(tokens_):
        n = tokens_.shape[1]
        return ref.log_hs_norm2(np.full(tokens_.shape[:2], 1.0 / n), np.einsum("bad,bid->bia", b.wv, tokens_),
                                np.einsum("bkd,bid->bik", b.wk, tokens_), math.log(2.0) + b.log_eta)

    hs_q, hs_d = one_step_hs(b.prompt), one_step_hs(b.target)
    u = refs.round_off
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        agree = {
            "hs_norm": log_agreement(lib["log_dw2"], refs.dw, u),
            "mmd2": agreement(lib["mmd2"], refs.mmd2, u),
            "hs_norm_one_step": np.maximum(log_agreement(lib["log_hs_q"], hs_q, u),
                                           log_agreement(lib["log_hs_d"], hs_d, u)),
            "prediction_shift": np.max(ref.vector_norm(lib["prediction_shift"] - (pred_q - pred_d)) / err_pred,
                                       axis=-1),
            "kd_risk": np.maximum(np.abs(lib["risk_q"] - risk_q), np.abs(lib["risk_d"] - risk_d)) / err_risk,
        }
        op = operator_norm_agreement(b.wv)
        agree["operator_norm"] = np.concatenate([op, np.zeros(b.size - op.size)])
        require_finite({f"library/reference agreement of {k}": v for k, v in agree.items()}, case_of)
        # (i) from the library's values, at every query
        wv_op = refs.wv_op  # the reference's SVD; ik.operator_norm is compared on a sample below
        log_dw = 0.5 * lib["log_dw2"]
        log_mmd = 0.5 * np.log(np.where(lib["mmd2"] > 0, lib["mmd2"], 0.0))
        log_2eta_mv_mmd = math.log(2.0) + b.log_eta + np.log(wv_op) + log_mmd
        log_diff = ref.log_vector_norm(lib["prediction_shift"])                                    # (B, Q)
        log_phi = 0.5 * np.sum(qkeys * qkeys, axis=-1)                                           # log ||phi(W^K x)||
        if mutant == "quarter-exponent":
            log_phi = 0.5 * log_phi
        elif mutant == "no-feature-norm":
            log_phi = np.zeros_like(log_phi)
        tol41 = OPERATIONS * f64 * (refs.dw.condition + refs.mmd2.condition + 1.0) * (1.0 + refs.max_logit)
        # below round-off resolution (module docstring): the smallest left-hand side over the largest bound that the
        # library's values allow, judged one-sided with no tolerance; the extra u covers ||W^V||_op, eta, phi
        intervals = resolved_intervals(lib["log_dw2"], lib["mmd2"], refs)
        cond_b = np.maximum(hs_q.condition, hs_d.condition)
        resolved = intervals.resolved & (u * cond_b <= RESOLUTION)
        # a condition is inf where the reference's own sum cancels to 0: such a case is not resolved
        require_finite({"thm-4.1 tolerance (conditions of ||ΔW||^2, MMD^2)": np.where(resolved, tol41, 0.0)},
                       case_of)
        log_slack = np.log1p(u)
        log_dw_hi = intervals.log_dw_hi + log_slack
        log_2eta_mv_mmd_hi = math.log(2.0) + b.log_eta + np.log(wv_op) + intervals.log_mmd_hi + log_slack

        def certified(log_observed, log_error, log_bound_hi):
            """``max(observed - error, 0) / bound_hi`` from logs (0 where the interval reaches 0)."""
            gap = np.where(log_error < log_observed, -np.expm1(log_error - log_observed), 0.0)
            return np.where(gap > 0, np.exp(log_observed + np.log(gap) - log_bound_hi), 0.0)

        # ratios and tolerances as differences of logs: a bound beyond float64 is no overflow
        pred_ratios, pred_scores, pred_tols = [], [], []
        for log_factor, log_factor_hi in ((log_dw, log_dw_hi), (log_2eta_mv_mmd, log_2eta_mv_mmd_hi)):
            log_bound = log_factor[:, None] + log_phi
            ratio = np.exp(log_diff - log_bound)
            tol = np.exp(np.log(err_pred) - log_bound) + tol41[:, None]
            excess = np.abs(ratio - 1.0) if cases.rho is not None else ratio - 1.0
            sure = certified(log_diff, np.log(err_pred), log_factor_hi[:, None] + log_phi)
            pred_ratios.append(np.where(resolved[:, None], ratio, sure))
            pred_scores.append(np.max(np.where(resolved[:, None], excess / np.where(resolved[:, None], tol, 1.0),
                                               sure), axis=-1))
            pred_tols.append(np.where(resolved, np.max(tol, axis=-1), 0.0))
        # (ii) on the reference's empirical measure
        log_t = np.log(np.max(t_r, axis=-1))
        log_c = 0.5 * np.max(np.sum(rkeys * rkeys, axis=-1), axis=-1)
        log_b = 0.5 * (lib["log_hs_d"] if mutant == "B-target-only" else np.maximum(lib["log_hs_q"], lib["log_hs_d"]))
        # B's upper end: each one-step ||W̄||^2 plus its budget u sum|terms|
        log_b_hi = 0.5 * (np.logaddexp(lib["log_hs_d"], np.log(u) + hs_d.log_terms) if mutant == "B-target-only"
                          else np.maximum(np.logaddexp(lib["log_hs_q"], np.log(u) + hs_q.log_terms),
                                          np.logaddexp(lib["log_hs_d"], np.log(u) + hs_d.log_terms)))
        risk_diff = np.abs(lib["risk_q"] - lib["risk_d"])
        log_tbc = np.logaddexp(log_t, log_b + log_c)
        log_tbc_hi = np.logaddexp(log_t, log_b_hi + log_c)
        log_two = 0.0 if mutant == "drop-factor-2" else math.log(2.0)
        log_c_factor = 0.0 if mutant == "drop-C" else log_c
        expected = 1.0 if cases.rho is None else (2.0 + cases.rho) / (2.0 + 2.0 * cases.rho)
        risk_ratios, risk_scores, risk_tols = [], [], []
        for log_factor, log_factor_hi in ((log_dw, log_dw_hi), (log_2eta_mv_mmd, log_2eta_mv_mmd_hi)):
            log_bound = log_two + log_tbc + log_c_factor + log_factor
            ratio = np.exp(np.log(risk_diff) - log_bound)
            # B's relative error u cond_B (<= 1/2 where resolved) enters T + BC at most in full
            tol = np.exp(np.log(err_risk) - log_bound) + tol41 + u * cond_b
            excess = np.abs(ratio - expected) if cases.rho is not None else ratio - 1.0
            sure = certified(np.log(risk_diff), np.log(err_risk), log_two + log_tbc_hi + log_c_factor + log_factor_hi)
            risk_ratios.append(np.where(resolved, ratio, sure))
            risk_scores.append(np.where(resolved, excess / np.where(resolved, tol, 1.0), sure))
            risk_tols.append(np.where(resolved, tol, 0.0))
    bound_score = np.maximum.reduce(pred_scores + risk_scores)
    agreement_score = np.max(np.stack(list(agree.values())), axis=0)
    # +inf only for a positive shift over a bound of exactly 0: a finite inequality that failed
    require_finite({"bound score": bound_score}, case_of, allow_inf=True)
    return Judged42(np.maximum.reduce([r.max(axis=-1) for r in pred_ratios]), tuple(pred_ratios),
                    np.maximum(*risk_ratios), tuple(risk_ratios), bound_score, agreement_score, agree,
                    np.maximum.reduce(pred_tols + risk_tols), np.maximum(max_logit_q, max_logit_r), resolved)


def general_cases(key, shape, size: int) -> tuple[Cases42, dict[str, int]]:
    """``size`` random heads of ``shape`` less those :func:`in_float64_range` rejects; returns the cases and how many
    were rejected, by reason."""
    batch, _ = draw_shift_batches(key, shape, size, max_scale=3.0)
    cases = Cases42(batch, draw_queries(jax.random.fold_in(key, 1), batch), batch.target)
    keep = in_float64_range(cases)
    return select(cases, keep), rejection_counts(cases, keep)


class Theorem42(Check):
    id = "thm-4.2"
    kind = "theorem"
    order = 420  # its place in the report: docs/statements.md order
    title = "prediction shift <= ||ΔW|| ||phi(W^K x)||; KD-risk shift <= 2(T+BC) C ||ΔW|| (exact on samples)"
    mutants = {
        "quarter-exponent": "||phi(W^K x)|| taken as exp(||W^K x||^2/4) instead of exp(||W^K x||^2/2)",
        "no-feature-norm": "the factor ||phi(W^K x)|| dropped from the prediction bound",
        "drop-factor-2": "the risk bound (T + BC) C ||ΔW|| without its factor 2",
        "drop-C": "the risk bound 2 (T + BC) ||ΔW|| without the factor C",
        "B-target-only": "B = ||W̄(𝒟)||_HS only (the assumption B >= both norms broken)",
    }

    def run(self, ctx: RunContext):
        smoke = ctx.profile.name == "smoke"
        per_shape = SMOKE_CASES if smoke else CASES_PER_SHAPE * ctx.profile.scale
        chunk = min(per_shape, CASES_PER_SHAPE)
        start = time.perf_counter()
        drawn = [general_cases(jax.random.fold_in(ctx.key, i), shape, per_shape) for i, shape in enumerate(SHAPES)]
        general = [cases for cases, _ in drawn]
        rejected = {reason: sum(counts[reason] for _, counts in drawn) for reason in drawn[0][1]}
        tight = draw_tight_cases(jax.random.fold_in(ctx.key, 77), per_shape)
        judged_g = [judge(c, ctx.mutant, chunk=chunk) for c in general]
        judged_t = judge(tight, ctx.mutant, chunk=chunk)
        batched_s = time.perf_counter() - start

        def measure(case: ShiftCase):
            batch, _ = case.build()
            queries = np.asarray(case.build()[0].target) + 0.5  # deterministic queries beside the target
            cases = Cases42(batch, queries, batch.target)
            keep = in_float64_range(cases)
            if not keep[0]:
                for reason, count in rejection_counts(cases, keep).items():
                    rejected[reason] += count
                reject()
            return float(judge(cases, ctx.mutant, chunk=chunk).score[0])

        exploration = explore(shift_cases(max_scale=3.0), measure, max_examples=ctx.profile.examples,
                              seed_value=ctx.hypothesis_seed, fails=lambda score: score > 1.0, shrink=ctx.shrink)
        scores_g = np.concatenate([j.score for j in judged_g])
        worst_score = max(float(scores_g.max()), float(judged_t.score.max()))
        pred_g = np.concatenate([j.prediction_ratio for j in judged_g])
        risk_g = np.concatenate([j.risk_ratio for j in judged_g])
        offsets = np.cumsum([0] + [c.batch.size for c in general])

        def case_of(i: int) -> dict:
            part = int(np.searchsorted(offsets, i, side="right")) - 1
            return general[part].case(int(i - offsets[part]))

        worst_i = int(np.argmax(np.maximum(pred_g, risk_g)))
        agreement_max = {q: float(max(np.max(j.agreement_by_quantity[q]) for j in judged_g + [judged_t]))
                         for q in judged_t.agreement_by_quantity}
        tight_pred = [np.max(np.abs(r - 1.0)) for r in judged_t.prediction_ratios]
        expected = (2.0 + tight.rho) / (2.0 + 2.0 * tight.rho)
        tight_risk_dev = float(np.max(np.abs(judged_t.risk_ratios[0] - expected)))
        violated = worst_score > 1.0 or exploration.counterexample is not None
        counterexample = None
        if exploration.counterexample is not None:
            case, score = exploration.counterexample
            counterexample = {"source": "hypothesis (shrunk)", "case": case.describe(), "score": score}
        elif worst_score > 1.0:
            if float(judged_t.score.max()) >= float(scores_g.max()):
                i = int(np.argmax(judged_t.score))
                counterexample = {"source": "attained configuration", "score": float(judged_t.score[i]),
                                  "rho": float(tight.rho[i]), **tight.case(i)}
            else:
                i = int(np.argmax(scores_g))
                counterexample = {"source": "random heads", "score": float(scores_g[i]), **case_of(i)}
        failed = [name for name, bad in (
            ("library/reference agreement", max(agreement_max.values()) > 1.0),
            ("bounds (random heads)", float(np.max([np.max(j.bound_score) for j in judged_g])) > 1.0),
            ("attained configuration (two-sided)", float(judged_t.bound_score.max()) > 1.0),
            ("hypothesis edge cases", exploration.counterexample is not None)) if bad]
        cases = int(offsets[-1]) + per_shape
        summary = (f"prediction shift/bound <= {pred_g.max():.4g}, risk shift/bound <= {risk_g.max():.4g} over "
                   f"{int(offsets[-1])} random heads; attained: |ratio-1| <= {max(tight_pred):.1e} (i), "
                   f"|risk ratio - (2+rho)/(2+2rho)| <= {tight_risk_dev:.1e} (ii); library = reference within "
                   f"{max(agreement_max.values()):.2g} x round-off")
        if violated:
            summary = "VIOLATED (" + ", ".join(failed) + "): " + summary
        return self.result(
            ctx, status="violated" if violated else "holds", cases=cases + exploration.cases,
            worst=float(max(pred_g.max(), risk_g.max())), worst_label="max observed / bound (predictions, risk)",
            tolerance=1.0 + float(max(np.max(j.tolerance[np.isfinite(j.tolerance)]) for j in judged_g)),
            tolerance_reason="per case: round-off of the two kernel sums (prediction) or of the two risks, "
                             "64 eps (1 + max|logit|) x their size, over the bound, plus thm-4.1's tolerance; "
                             "two-sided at the attained configuration; library = reference within the same budgets",
            tightness=1.0 / float(np.max(judged_t.prediction_ratios[0])),
            figures={
                "cases_batched": cases, "cases_hypothesis": exploration.cases,
                "cases_per_second": cases / batched_s,
                "max_ratio_prediction_random": float(pred_g.max()),
                "max_ratio_risk_random": float(risk_g.max()),
                "per_case_quantiles": case_quantiles(pred_g, "prediction shift / bound (random heads)", 1.0),
                "max_abs_tight_prediction_minus_1": float(tight_pred[0]),
                "max_abs_tight_chain_minus_1": float(tight_pred[1]),
                "max_tight_risk_ratio": float(judged_t.risk_ratios[0].max()),
                "max_abs_tight_risk_ratio_minus_expected": tight_risk_dev,
                "max_agreement_in_round_off_units": agreement_max,
                "max_logit": float(max(np.max(j.max_logit) for j in judged_g)),
                "cases_below_round_off_resolution": int(sum(np.sum(~j.resolved) for j in judged_g + [judged_t])),
                "max_score": worst_score,
                "rejected_cases": rejected,
                "worst_case_risk": case_of(int(np.argmax(risk_g))),
            },
            counterexample=counterexample, worst_case=case_of(worst_i), summary=summary)
