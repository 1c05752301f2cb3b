"""The suite's own search targets (:mod:`verification.adversary`), one builder per check.

Each objective below is written directly in ``jax.numpy`` from THEOREMS.md (a traceable,
differentiable formula, max-shifted where it exponentiates), and each ``remeasure`` hands the
best case to the check's own measurement functions, which are compared with the independent
reference by the check's tests; ``agreement`` between the two is reported for every search, so
a wrong objective formula shows up as a disagreement rather than as a wrong verdict.

Targets:

* ``thm-4.1``: ``||ΔW||_HS / (2 eta ||W^V||_op MMD_k)`` over ``W^K``, ``W^V`` and the two samples
  (tokens in a ball); 1 is attained by isometric ``W^V``, which the search is not told.
* ``thm-4.2/prediction``: ``||f_S(x; W̄(𝒬)) - f_S(x; W̄(𝒟))|| / (2 eta ||W^V||_op MMD_k e^{||W^K x||^2/2})``
  over the maps, both samples and the query ``x``.
* ``thm-4.2/risk``: ``|L(W̄(𝒬)) - L(W̄(𝒟))| / (2 (T + BC) C ||ΔW||_HS)`` on the empirical measure of a
  reference sample (also searched), ``T``, ``C``, ``B`` the exact sups (as in the check), and ``eta``.
* ``thm-4.2/risk-frontier``: the risk ratio over the sharper frontier
  ``F = h(delta) / (2 (T + beta) delta)``, ``delta = C ||ΔW||``, ``beta = BC``,
  ``h(delta) = 2 delta T + 2 beta delta - delta^2`` (``delta <= beta``), ``2 delta T + beta^2`` (else),
  i.e. ``F = 1 - delta / (2 (T + BC))`` when ``delta <= BC`` (derived in docs/search.md); <= 1 if the
  derivation is right, and the ``(2+rho)/(2+2rho)`` configuration of the check lies on it.
* ``thm-3.2``: the expected supremum gap ``E sup_{||W||<=B} L - L_N`` over the bound, for a law with
  ``K`` learnable atoms (in the unit ball) and weights (softmax), the maps and ``B``.
* ``lemma-features/{positive,orthogonal,trig}``: the relative RMS error of ``<phi(u), phi(z)>`` against
  ``exp(u.z)`` at ``m = 64`` features, over ``||u||, ||z|| <= 1``.
* ``conj-4.1/<kernel>``: ``c_hat = ||ΔW|| / (2 eta ||W^V||_op M_x M_phi MMD_k0)`` per kernel and
  bandwidth of the check.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import iclkd_jax as ik
from verification.cases import sup_gap
from verification.cases.shift_cases import ShiftBatch
from verification.oracles import reference
from verification.oracles.feature_variance import per_feature_variance
from verification.search.ascent import SearchTarget
from verification.search.projections import (
    project_rows_to_ball,
    project_to_ball,
    project_to_box,
    project_to_spectral_ball,
    simplex,
)
from verification.statements.thm_4_1 import check as check_41
from verification.statements.thm_4_2 import check as check_42

TINY = 1e-300


def _log(x):
    return jnp.log(jnp.maximum(x, TINY))


def _normal(key, shape, scale=1.0):
    return scale * jax.random.normal(key, shape, jnp.float64)


def _lists(params) -> dict:
    return {k: np.asarray(v, np.float64).tolist() for k, v in params.items()}


def _np(params) -> dict:
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def _log_quadratic(coef, gram, keys):
    """``log sum_ij c_i c_j G_ij exp(k_i . k_j)`` with the largest logit factored out (THEOREMS.md, hazards)."""
    logits = keys @ keys.T
    top = jax.lax.stop_gradient(jnp.max(logits))
    return _log(coef @ (gram * jnp.exp(logits - top)) @ coef) + top


def _shift_parts(p):
    """Tokens ``[prompt; target]``, coefficients ``[+1/n; -1/m]``, keys and values of Theorem 4.1's ΔW."""
    prompt, target = p["prompt"], p["target"]
    n, m = prompt.shape[0], target.shape[0]
    tokens = jnp.concatenate([prompt, target])
    coef = jnp.concatenate([jnp.full((n,), 1.0 / n), jnp.full((m,), -1.0 / m)])
    return tokens, coef, tokens @ p["wk"].T, tokens @ p["wv"].T


def _log_op_norm(w):
    return jnp.log(jnp.linalg.norm(w, 2))


def _log_dw_and_mmd(p):
    """``(log ||ΔW||_HS / (2 eta), log MMD_k)`` (Theorem 4.1: the factor 2 eta is common to both sides)."""
    tokens, coef, keys, values = _shift_parts(p)
    return (0.5 * _log_quadratic(coef, values @ values.T, keys),
            0.5 * _log_quadratic(coef, tokens @ tokens.T, keys))


def _batch(q, log_eta: float) -> ShiftBatch:
    """One case as the checks' batch of one (their ``judge`` re-measures it against the reference)."""
    return ShiftBatch(*(np.asarray(q[k], np.float64)[None] for k in ("wk", "wv", "target", "prompt")),
                      np.array([log_eta]))


# ----------------------------------------------------------------------------------------
# Theorem 4.1
# ----------------------------------------------------------------------------------------

#: (d, d_k, d_v, n, m) of the searched samples; d_v > d so an isometric W^V exists, n != m
SHAPE_41 = (3, 2, 4, 4, 5)
TOKEN_RADIUS = 2.0
KEY_MAP_RADIUS = 2.0   # ||W^K||_F <= 2: logits ||W^K x||^2 <= 16


def _shift_init(shape, *, query_rows: int = 0, reference_rows: int = 0, eta: bool = False):
    d, dk, dv, n, m = shape

    def init(key):
        ks = jax.random.split(key, 7)
        p = {"wk": _normal(ks[0], (dk, d), 1.0 / math.sqrt(d)), "wv": _normal(ks[1], (dv, d), 1.0 / math.sqrt(d)),
             "target": _normal(ks[2], (m, d)), "prompt": _normal(ks[3], (n, d))}
        if query_rows:
            p["query"] = _normal(ks[4], (query_rows, d))
        if reference_rows:
            p["reference"] = _normal(ks[5], (reference_rows, d))
        if eta:
            p["log_2eta"] = jax.random.uniform(ks[6], (), jnp.float64, -3.0, 3.0)
        return p

    return init


def _shift_project(p):
    out = dict(p)
    out["wk"] = project_to_ball(p["wk"], KEY_MAP_RADIUS)
    out["wv"] = project_to_ball(p["wv"], 2.0 * math.sqrt(p["wv"].shape[0]))  # every ratio is scale-free in W^V
    for name in ("target", "prompt", "query", "reference"):
        if name in p:
            out[name] = project_rows_to_ball(p[name], TOKEN_RADIUS)
    if "log_2eta" in p:
        out["log_2eta"] = project_to_box(p["log_2eta"], -6.0, 6.0)
    return out


def _reference_ratio_41(q) -> float:
    """Theorem 4.1's ratio from the independent NumPy reference (verification/reference.py)."""
    log_hs2 = reference.log_hs_norm2(*reference.weight_difference(q["wk"], q["wv"], q["target"], q["prompt"],
                                                                  math.log(0.5))).log_abs
    sign, log_mmd2, _, _ = reference.log_mmd2(q["target"], q["prompt"], "product", wk=q["wk"])
    if sign <= 0:
        return math.inf
    return math.exp(0.5 * float(log_hs2) - math.log(float(reference.operator_norm(q["wv"]))) - 0.5 * float(log_mmd2))


def _relative(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b)) if math.isfinite(a) and math.isfinite(b) else math.inf


def thm_4_1(shape=SHAPE_41) -> list[SearchTarget]:
    def log_ratio(p):
        log_dw, log_mmd = _log_dw_and_mmd(p)
        return log_dw - log_mmd - _log_op_norm(p["wv"])

    def remeasure(p):
        q = _np(p)
        judged = check_41.judge(_batch(q, math.log(0.5)), None, attained=False, chunk=1)
        ratio = float(judged.ratio[0])
        s = np.linalg.svd(q["wv"], compute_uv=False)
        ref = _reference_ratio_41(q)
        return {"ratio": ratio, "tolerance": float(judged.ratio_tolerance[0]),
                "library_vs_reference_in_round_off_units": float(judged.agreement_score[0]),
                "reference_ratio": ref, "reference_agreement": _relative(ratio, ref),
                "mmd_tilde": float(judged.mmd_tilde[0]), "wv_singular_values": s.tolist(),
                "max_logit": float(judged.max_logit[0]), "measured_by": "verification.statements.thm_4_1.check.judge"}

    return [SearchTarget(
        name="thm-4.1", description="||ΔW||_HS / (2 eta ||W^V||_op MMD_k) over W^K, W^V, 𝒟, 𝒬 (tokens in a ball)",
        init=_shift_init(shape), objective=lambda p: jnp.exp(log_ratio(p)), log_objective=log_ratio,
        project=_shift_project, remeasure=remeasure, describe=lambda p: {**_lists(p), "eta": 0.5},
        learning_rate=0.05)]


# ----------------------------------------------------------------------------------------
# Theorem 4.2
# ----------------------------------------------------------------------------------------

#: (d, d_k, d_v, n, m): the check's first shape (d = d_k + d_v, as in its attained configuration)
SHAPE_42 = (4, 2, 2, 4, 4)
REFERENCE_ROWS = 4


def _predictions(p, points, log_2eta=0.0):
    """``(W̄(𝒬) - W̄(𝒟)) phi(W^K x)`` at rows ``x`` of ``points`` as ``(log scale, unit-scaled vectors)``."""
    _, coef, keys, values = _shift_parts(p)
    logits = (points @ p["wk"].T) @ keys.T                       # (r, n + m)
    top = jax.lax.stop_gradient(jnp.max(logits, axis=1, keepdims=True))
    return log_2eta + top[:, 0], (jnp.exp(logits - top) * coef[None, :]) @ values


def _prediction_log_ratio(p):
    """Theorem 4.2 (i), the end of the chain: shift / (2 eta ||W^V||_op MMD_k exp(||W^K x||^2 / 2))."""
    log_scale, vectors = _predictions(p, p["query"])
    _, log_mmd = _log_dw_and_mmd(p)
    qk = p["query"] @ p["wk"].T
    log_phi = 0.5 * jnp.sum(qk * qk, axis=1)
    return jnp.max(log_scale + _log(jnp.linalg.norm(vectors, axis=1)) - log_phi) - log_mmd - _log_op_norm(p["wv"])


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
    _, coef, keys, values = _shift_parts(p)
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
    """The check's attained configuration (THEOREMS.md, Theorem 4.2): risk ratio ``(2 + rho) / (2 + 2 rho)``."""
    return (2.0 + rho) / (2.0 + 2.0 * rho)


def _risk_log_ratio(p):
    return _log(risk_ratio(risk_parts(p)))


def _frontier_log_ratio(p):
    parts = risk_parts(p)
    frontier = risk_frontier(parts["T"], parts["B"] * parts["C"], parts["C"] * parts["dw"])
    return _log(risk_ratio(parts)) - _log(frontier)


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


def thm_4_2(shape=SHAPE_42) -> list[SearchTarget]:
    def measured(q, queries, reference_tokens, log_eta):
        cases = check_42.Cases42(_batch(q, log_eta), np.asarray(queries)[None], np.asarray(reference_tokens)[None])
        return check_42.judge(cases, None, chunk=1)

    def remeasure_prediction(p):
        q = _np(p)
        judged = measured(q, q["query"], q["target"], math.log(0.5))
        hs_chain, mmd_chain = (float(r[0].max()) for r in judged.prediction_ratios)
        ref = reference_42(q, q["query"], q["target"], math.log(0.5))["prediction_ratio"]
        return {"ratio": mmd_chain, "ratio_hs_chain": hs_chain, "tolerance": float(judged.tolerance[0]),
                "library_vs_reference_in_round_off_units": float(judged.agreement_score[0]),
                "reference_ratio": ref, "reference_agreement": _relative(mmd_chain, ref),
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
                "reference_ratio": ref["risk_ratio"], "reference_agreement": _relative(hs_chain, ref["risk_ratio"]),
                "relative_shift_r": r, "delta_over_beta": delta / beta,
                "frontier": float(risk_frontier(ref["T"], beta, delta)), "configuration_rho": rho,
                "configuration_ratio_at_r": configuration_ratio(rho) if math.isfinite(rho) else 0.5,
                "T": ref["T"], "C": ref["C"], "B": ref["B"], "norm_dw": ref["norm_dw"],
                "measured_by": "verification.statements.thm_4_2.check.judge (T, C, B, ||ΔW|| from verification.reference)"}

    def remeasure_risk(p):
        figures = risk_figures(_np(p))
        return {"ratio": figures["ratio_hs_chain"], **figures}

    def remeasure_frontier(p):
        figures = risk_figures(_np(p))
        return {"ratio": figures["ratio_hs_chain"] / figures["frontier"], **figures}

    def describe(p):
        out = _lists(p)
        out["eta"] = 0.5 * math.exp(float(p["log_2eta"])) if "log_2eta" in p else 0.5
        return out

    prediction = SearchTarget(
        name="thm-4.2/prediction",
        description="prediction shift / (2 eta ||W^V||_op MMD_k exp(||W^K x||^2/2)) over W^K, W^V, 𝒟, 𝒬, x",
        init=_shift_init(shape, query_rows=1), objective=lambda p: jnp.exp(_prediction_log_ratio(p)),
        log_objective=_prediction_log_ratio, project=_shift_project, remeasure=remeasure_prediction,
        describe=describe)
    risk = SearchTarget(
        name="thm-4.2/risk",
        description="|L(W̄(𝒬)) - L(W̄(𝒟))| / (2(T+BC) C ||ΔW||_HS) over W^K, W^V, eta, 𝒟, 𝒬, reference sample",
        init=_shift_init(shape, reference_rows=REFERENCE_ROWS, eta=True),
        objective=lambda p: jnp.exp(_risk_log_ratio(p)), log_objective=_risk_log_ratio, project=_shift_project,
        remeasure=remeasure_risk, describe=describe)
    frontier = SearchTarget(
        name="thm-4.2/risk-frontier",
        description="the risk ratio over the sharp frontier 1 - C||ΔW|| / (2(T+BC)) (<= 1; docs/search.md)",
        init=_shift_init(shape, reference_rows=REFERENCE_ROWS, eta=True),
        objective=lambda p: jnp.exp(_frontier_log_ratio(p)), log_objective=_frontier_log_ratio,
        project=_shift_project, remeasure=remeasure_frontier, describe=describe,
        ratio_label="risk ratio / frontier")
    return [prediction, risk, frontier]


# ----------------------------------------------------------------------------------------
# Theorem 3.2 over finite-support laws
# ----------------------------------------------------------------------------------------

ATOMS = 6
N_DEMOS = 64
SEARCH_DRAWS = 128      # common random numbers: the same uniforms in every evaluation
REMEASURE_DRAWS = 4000  # fresh draws for the re-measurement
REFERENCE_DRAWS = 50    # of those, compared draw by draw with reference.sup_gap
BALL_RANGE = (0.1, 10.0)


def _law(p):
    """Atoms, weights, features ``phi_p(W^K z_j)``, targets ``W^V z_j`` and the exact sups ``T``, ``C``."""
    pi = simplex(p["logits"])
    phi, t = sup_gap.features_targets(p["atoms"], p["wk"], p["wv"])
    big_t = jnp.max(jnp.linalg.norm(t, axis=1))
    big_c = jnp.max(jnp.linalg.norm(phi, axis=1))
    return pi, phi, t, big_t, big_c


def _bound_32(big_b, big_c, big_t, n=N_DEMOS, delta=sup_gap.DELTA):
    s = big_t + big_b * big_c
    return 4 * big_b * big_c * s / math.sqrt(n) + s**2 * math.sqrt(math.log(1 / delta) / (2 * n))


def _one_gap(phi, t, pop, weights, ball):
    """``sup_{||W|| <= B} L - L_N`` for one draw, with the envelope-theorem gradient.

    The maximiser ``W* = B U*`` is found by the library's exact solver and held fixed
    (``stop_gradient`` on ``U*``): the value is the maximum, and its gradient is Danskin's
    (``d/dtheta max_W f(W; theta) = df/dtheta at W*``, scaled with the ball through ``B``).
    """
    sig, m, c = sup_gap.moments(phi, t, weights)
    d_s, d_m, d_c = pop[0] - sig, pop[1] - m, pop[2] - c
    lam, q = jnp.linalg.eigh(0.5 * (d_s + d_s.T))
    beta = (d_m @ q).reshape(-1)
    sol = ik.max_quadratic_in_eigenbasis(jnp.tile(lam, d_m.shape[0]), beta, ball)
    unit = jax.lax.stop_gradient(sol.coordinates.reshape(d_m.shape) @ q.T / ball)
    w = ball * unit
    return d_c + jnp.sum((w @ d_s) * w) - 2.0 * jnp.sum(w * d_m)


def thm_3_2(atoms=ATOMS, n=N_DEMOS, draws=SEARCH_DRAWS) -> list[SearchTarget]:
    d, dk, dv = sup_gap.TOKEN_DIM, sup_gap.KEY_DIM, sup_gap.VALUE_DIM
    draw_key = jax.random.key(32)   # fixed: every evaluation sees the same uniforms

    def init(key):
        ks = jax.random.split(key, 5)
        return {"atoms": _normal(ks[0], (atoms, d), 1.0 / math.sqrt(d)), "logits": _normal(ks[1], (atoms,)),
                "wk": _normal(ks[2], (dk, d), 1.0 / math.sqrt(d)), "wv": _normal(ks[3], (dv, d), 1.0 / math.sqrt(d)),
                "log_b": jax.random.uniform(ks[4], (), jnp.float64, -1.0, 1.0)}

    def project(p):
        return {"atoms": project_rows_to_ball(p["atoms"], 1.0), "logits": project_to_box(p["logits"], -8.0, 8.0),
                "wk": project_to_spectral_ball(p["wk"], 1.0), "wv": project_to_spectral_ball(p["wv"], 1.0),
                "log_b": project_to_box(p["log_b"], math.log(BALL_RANGE[0]), math.log(BALL_RANGE[1]))}

    def gaps_and_bound(p):
        """The exact sup gaps of ``draws`` multinomial samples (Gumbel-max from fixed uniforms), ``log p(counts)``,
        and the bound with the exact sups ``T``, ``C`` over the atoms."""
        pi, phi, t, big_t, big_c = _law(p)
        ball = jnp.exp(p["log_b"])
        pop = sup_gap.moments(phi, t, pi)
        idx = jax.random.categorical(draw_key, p["logits"], shape=(draws, n))
        counts = jnp.sum(jax.nn.one_hot(idx, atoms, dtype=phi.dtype), axis=1)
        gaps = jax.vmap(lambda w: _one_gap(phi, t, pop, w, ball))(counts / n)
        return gaps, counts @ jnp.log(pi), _bound_32(ball, big_c, big_t, n)

    def objective_mean(p):
        """``E[G_N] / bound``, E over ``draws`` multinomial samples, with the score-function term for the weights.

        The samples are Gumbel-max draws from fixed uniforms (piecewise constant in the weights), so the
        pathwise gradient misses how the weights move the sample; the score-function term
        ``(G - mean G) d log p(counts)`` adds it (value unchanged: it is zero at the current point).
        """
        gaps, log_p, bound = gaps_and_bound(p)
        centred = jax.lax.stop_gradient(gaps - jnp.mean(gaps))
        surrogate = jnp.mean(gaps) + jnp.mean(centred * (log_p - jax.lax.stop_gradient(log_p)))
        return surrogate / bound

    def objective_quantile(p):
        """The ``(1 - delta)``-quantile of the draws' gaps over the bound (the statement's own quantity).

        Pathwise gradient only (a quantile has no simple score-function term): the weights move it through the
        population moments and the bound, not through the sample.
        """
        gaps, _, bound = gaps_and_bound(p)
        return jnp.quantile(gaps, 1.0 - sup_gap.DELTA) / bound

    def measure(p):
        q = _np(p)
        pi = np.exp(q["logits"] - q["logits"].max())
        pi /= pi.sum()
        ball = math.exp(float(q["log_b"]))
        key = jax.random.key(3232)
        idx = np.asarray(jax.random.choice(key, atoms, (REMEASURE_DRAWS, n), p=jnp.asarray(pi)))
        tokens = np.zeros((REMEASURE_DRAWS, sup_gap.N_MAX, d))
        tokens[:, :n] = q["atoms"][idx]
        wk, wv = jnp.asarray(q["wk"]), jnp.asarray(q["wv"])
        phi, t = sup_gap.features_targets(jnp.asarray(q["atoms"]), wk, wv)
        sig, m, c = sup_gap.moments(phi, t, jnp.asarray(pi))
        pop = sup_gap.Population(sig, m, c, 0.0, f"exact ({atoms} atoms)")
        res = sup_gap.sup_gaps(jnp.asarray(tokens), jax.random.fold_in(key, 1), sup_gap.demo_weights(n), wk, wv,
                               pop, ball)
        big_t = float(np.max(np.linalg.norm(np.asarray(t), axis=1)))
        big_c = float(np.max(np.linalg.norm(np.asarray(phi), axis=1)))
        bound = float(sup_gap.theorem_bound(ball, big_c, big_t, n))
        gaps = res.gap
        # the independent reference on the first draws: NumPy Taylor features, moments and the dual solver
        ref_phi = reference.taylor_features(q["atoms"] @ q["wk"].T, sup_gap.ORDER)
        ref_t = q["atoms"] @ q["wv"].T
        ref_pop = reference.kd_moments(ref_phi, ref_t, pi)
        ref_gaps = []
        for row in idx[:REFERENCE_DRAWS]:
            w = np.bincount(row, minlength=atoms) / n
            ref_gaps.append(float(reference.sup_gap(ref_pop, reference.kd_moments(ref_phi, ref_t, w), ball)))
        ref_gaps = np.asarray(ref_gaps)
        scale = np.maximum(np.abs(ref_gaps), 1e-300)
        mean = float(gaps.mean())
        return {"mean_ratio": mean / bound, "mean_ratio_standard_error": float(gaps.std(ddof=1) / math.sqrt(gaps.size)) / bound,
                "quantile_ratio": float(np.quantile(gaps, 1 - sup_gap.DELTA)) / bound,
                "max_ratio": float(gaps.max()) / bound, "violations": int(np.sum(gaps > bound)),
                "draws": int(gaps.size), "bound": bound, "T": big_t, "C": big_c, "B": ball, "N": n,
                "weights": pi.tolist(),
                "reference_max_relative_difference": float(np.max(np.abs(gaps[:REFERENCE_DRAWS] - ref_gaps) / scale)),
                "solver_guard_ok": bool(np.all(res.probe <= gaps + 64 * np.finfo(np.float64).eps * (1 + res.scale))),
                "measured_by": "verification.sup_gap.sup_gaps on fresh draws (first draws against reference.sup_gap)"}

    def describe(p):
        out = _lists(p)
        out["weights"] = np.asarray(simplex(jnp.asarray(p["logits"]))).tolist()
        out["B"] = math.exp(float(p["log_b"]))
        out["N"] = n
        out["delta"] = sup_gap.DELTA
        return out

    law = (f"a law on {atoms} learnable atoms (unit ball) and weights, W^K, W^V (||.||_op <= 1), B; N = {n}, "
           f"Taylor order {sup_gap.ORDER}")
    return [
        SearchTarget(name="thm-3.2/mean", description=f"E sup_(||W||<=B) [L - L_N] / bound for {law}",
                     init=init, objective=objective_mean, project=project,
                     remeasure=lambda p: (lambda m: {"ratio": m["mean_ratio"], **m})(measure(p)),
                     describe=describe, ratio_label="E[sup gap] / bound", learning_rate=0.05, restarts=8),
        SearchTarget(name="thm-3.2/quantile",
                     description=f"(1-delta)-quantile of sup_(||W||<=B) [L - L_N] / bound for {law}",
                     init=init, objective=objective_quantile, project=project,
                     remeasure=lambda p: (lambda m: {"ratio": m["quantile_ratio"], **m})(measure(p)),
                     describe=describe, ratio_label="95% quantile of sup gap / bound", learning_rate=0.05,
                     restarts=8),
    ]


# ----------------------------------------------------------------------------------------
# Random-feature maps at fixed m
# ----------------------------------------------------------------------------------------

FEATURES = 64
SEARCH_MAPS = 2048       # fixed draws in the search objective (a Monte Carlo objective: more maps, less overfitting)
REMEASURE_KEYS = 8192    # fresh draws in the re-measurement
#: ||u||, ||z|| <= 0.5, so |u + z| <= 1: where the check judges the variance (beyond it the lognormal
#: features' fourth moment makes a Monte Carlo RMS unreliable at these sample sizes)
FEATURE_RADIUS = 0.5


def lemma_features(num_features=FEATURES, maps=SEARCH_MAPS) -> list[SearchTarget]:
    from verification.statements.lemma_features.check import KEY_DIM, M_GRID, estimates_under_test

    column = M_GRID.index(num_features)
    targets = []
    for kind in ("positive", "orthogonal", "trig"):
        map_kind = "trig" if kind == "trig" else "positive"

        @functools.cache
        def draws(kind=kind):
            """The search's fixed maps ``(omega (maps, m, d_k), offset (maps, m))``, drawn by the library on first use."""
            def one(key):
                if kind == "trig":
                    fm = ik.trig_random_features(key, num_features, key_dim=KEY_DIM)
                    return fm.omega, fm.offset
                fm = ik.positive_random_features(key, num_features, key_dim=KEY_DIM, orthogonal=kind == "orthogonal")
                return fm.omega, jnp.zeros((num_features,), fm.omega.dtype)

            # concrete arrays even when first called while an objective is being traced (then cached)
            with jax.ensure_compile_time_eval():
                return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(64), maps))

        def rms(p, draws=draws, map_kind=map_kind):
            u, z = p["u"][None, :], p["z"][None, :]
            omega, offset = draws()

            def estimate(om, off):
                fm = ik.FeatureMap(map_kind, key_dim=KEY_DIM, omega=om, offset=off if map_kind == "trig" else None)
                return jnp.sum(fm(u) * fm(z))

            rel = jax.vmap(estimate)(omega, offset) * jnp.exp(-jnp.sum(p["u"] * p["z"])) - 1.0
            return jnp.sqrt(jnp.mean(rel * rel))

        def remeasure(p, kind=kind):
            u, z = np.asarray(p["u"])[None, :], np.asarray(p["z"])[None, :]
            fresh = jax.random.split(jax.random.key(6464), REMEASURE_KEYS)
            est = estimates_under_test(fresh, u, z, kind, None)[:, column, 0]
            rel = est / math.exp(float(np.sum(u * z))) - 1.0
            mse = float(np.mean(rel * rel))
            # standard error of the RMS by the delta method on the mean square
            se = float(np.std(rel * rel, ddof=1) / math.sqrt(rel.size)) / (2 * math.sqrt(mse))
            predicted = math.sqrt(float(per_feature_variance("positive" if kind == "orthogonal" else kind, u, z)[0])
                                  / num_features)
            # the formula's supremum over the ball: |u + z| = 2R (u = z) or |u - z| = 2R (u = -z)
            r2 = (2 * FEATURE_RADIUS) ** 2
            sup_var = math.exp(r2) - 1 + (0.5 * math.exp(-r2) if kind == "trig" else 0.0)
            return {"ratio": math.sqrt(mse), "standard_error": se, "keys": REMEASURE_KEYS, "m": num_features,
                    "predicted_iid_rms": predicted, "measured_over_predicted": math.sqrt(mse) / predicted,
                    "formula_sup_rms": math.sqrt(sup_var / num_features),
                    "norm_u_plus_z": float(np.linalg.norm(u + z)), "norm_u_minus_z": float(np.linalg.norm(u - z)),
                    "measured_by": "verification.statements.lemma_features.check.estimates_under_test (fresh keys); "
                                   "prediction from verification.feature_variance"}

        def init(key):
            ku, kz = jax.random.split(key)
            return {"u": _normal(ku, (KEY_DIM,), 0.5), "z": _normal(kz, (KEY_DIM,), 0.5)}

        def project(p):
            return {"u": project_to_ball(p["u"], FEATURE_RADIUS), "z": project_to_ball(p["z"], FEATURE_RADIUS)}

        targets.append(SearchTarget(
            name=f"lemma-features/{kind}",
            description=f"relative RMS error of <phi(u), phi({'z'})> vs exp(u.z), {kind} features, m = {num_features},"
                        f" ||u||, ||z|| <= {FEATURE_RADIUS} ({maps} fixed maps in the search, fresh ones re-measure)",
            init=init, objective=rms, project=project, remeasure=remeasure, describe=_lists,
            ratio_label=f"relative RMS error (m={num_features})", bound=None, learning_rate=0.05, restarts=8))
    return targets


# ----------------------------------------------------------------------------------------
# Conjecture 4.1 per kernel and bandwidth
# ----------------------------------------------------------------------------------------

SHAPE_CONJ = (4, 3, 3, 6)


def _pairwise_distances(z):
    """``||z_i - z_j||`` with a zero (and zero-gradient) diagonal: the double-where keeps sqrt' finite."""
    diff = z[:, None, :] - z[None, :, :]
    d2 = jnp.sum(diff * diff, axis=-1)
    positive = d2 > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0)


def _median_distance(z):
    n = z.shape[0]
    rows, cols = np.triu_indices(n, k=1)
    return jnp.median(_pairwise_distances(z)[rows, cols])


def conj_4_1(shape=SHAPE_CONJ) -> list[SearchTarget]:
    from verification.statements.conj_4_1.check import KERNELS, ZERO_MMD2, PairBatch, measure_pairs

    d, dk, dv, n = shape
    targets = []
    for name, (kind, multiple) in KERNELS.items():

        def log_c_hat(p, kind=kind, multiple=multiple):
            x, y = p["target"], p["prompt"]
            tokens, coef, keys, _ = _shift_parts(p)
            log_dw, log_mmd_product = _log_dw_and_mmd(p)
            log_mx = 0.5 * jnp.log(jnp.max(jnp.sum(tokens * tokens, axis=1)))
            log_mphi = 0.5 * jnp.max(jnp.sum(keys * keys, axis=1))
            if kind == "linear":
                diff = jnp.mean(y, axis=0) - jnp.mean(x, axis=0)
                mmd2 = jnp.sum(diff * diff) * jnp.exp(-2 * log_mx)
            elif kind == "product":
                mmd2 = jnp.exp(2 * (log_mmd_product - log_mx - log_mphi))
            else:
                dist = _pairwise_distances(tokens)
                h = multiple * _median_distance(tokens)
                gram = jnp.exp(-dist**2 / (2 * h**2)) if kind == "rbf" else jnp.exp(-dist / h)
                mmd2 = coef @ gram @ coef
            # an MMD^2 below round-off (the check's zero) counts as that floor: c_hat stays finite, and a pair
            # of nearly equal samples (both sides -> 0) is not rewarded for the round-off of its MMD
            return (log_dw - _log_op_norm(p["wv"]) - log_mx - log_mphi
                    - 0.5 * jnp.log(jnp.maximum(mmd2, ZERO_MMD2)))

        def remeasure(p, name=name):
            q = _np(p)
            batch = PairBatch(*(q[k][None] for k in ("wk", "wv", "target", "prompt")), np.array(["search"]))
            m = measure_pairs(batch, chunk=1)
            c_hat, ref = float(m.c_hat[name][0]), float(m.c_hat_reference[name][0])
            return {"ratio": c_hat, "reference_ratio": ref, "reference_agreement": _relative(c_hat, ref),
                    "mmd2_normalised": float(m.mmd2[name][0]), "mmd_zero_within_round_off": bool(m.zero[name][0]),
                    "dw_certified_nonzero": bool(m.certified[0]),
                    "library_vs_reference_in_round_off_units": float(m.agreement[name][0]),
                    "mean_difference": float(np.linalg.norm(q["target"].mean(0) - q["prompt"].mean(0))),
                    "measured_by": "verification.statements.conj_4_1.check.measure_pairs"}

        slug = name.replace(" (control)", "-control")
        targets.append(SearchTarget(
            name=f"conj-4.1/{slug}",
            description=f"c_hat = ||ΔW|| / (2 eta ||W^V||_op M_x M_phi MMD_k0), k0 = {name}"
                        + (f" at {multiple} x the median bandwidth" if multiple else ""),
            init=_shift_init((d, dk, dv, n, n)), objective=lambda p, f=log_c_hat: jnp.exp(f(p)),
            log_objective=log_c_hat, project=_shift_project, remeasure=remeasure,
            describe=lambda p: {**_lists(p), "eta": 0.5}, ratio_label="c_hat",
            bound=1.0 if kind == "product" else None))
    return targets


BUILTIN: dict[str, Callable[[], list[SearchTarget]]] = {
    "thm-4.1": thm_4_1,
    "thm-4.2": thm_4_2,
    "thm-3.2": thm_3_2,
    "lemma-features": lemma_features,
    "conj-4.1": conj_4_1,
}


def builtin_targets(check_id: str) -> list[SearchTarget]:
    builder = BUILTIN.get(check_id)
    return builder() if builder is not None else []


__all__ = ["BUILTIN", "builtin_targets", "configuration_ratio", "conj_4_1", "lemma_features",
           "reference_42", "risk_frontier", "risk_parts", "risk_ratio", "thm_3_2", "thm_4_1", "thm_4_2"]
