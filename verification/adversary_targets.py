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

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import iclkd_jax as ik
from verification.adversary import (
    SearchTarget,
    project_rows_to_ball,
    project_to_ball,
    project_to_box,
)

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


def _weights(p) -> ik.AttentionWeights:
    wk = jnp.asarray(p["wk"], jnp.float64)
    return ik.AttentionWeights(wk, wk, jnp.asarray(p["wv"], jnp.float64))


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


def thm_4_1(shape=SHAPE_41) -> list[SearchTarget]:
    from verification.checks.thm_4_1 import weight_shift

    def log_ratio(p):
        log_dw, log_mmd = _log_dw_and_mmd(p)
        return log_dw - log_mmd - _log_op_norm(p["wv"])

    def remeasure(p):
        q = _np(p)
        m = weight_shift(_weights(q), jnp.asarray(q["target"]), jnp.asarray(q["prompt"]), math.log(0.5))
        s = np.linalg.svd(q["wv"], compute_uv=False)
        return {"ratio": m["ratio"], "tolerance": m["tolerance"], "ratio_normalised": m["ratio_normalised"],
                "wv_singular_values": s.tolist(), "wv_condition": float(s[0] / s[-1]),
                "max_logit": m["max_logit"], "measured_by": "verification.checks.thm_4_1.weight_shift"}

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


def thm_4_2(shape=SHAPE_42) -> list[SearchTarget]:
    from verification.checks.thm_4_2 import shift_bounds

    def measured(q, queries, reference, log_eta):
        return shift_bounds(_weights(q), jnp.asarray(q["target"]), jnp.asarray(q["prompt"]), jnp.asarray(queries),
                            jnp.asarray(reference), log_eta)

    def remeasure_prediction(p):
        q = _np(p)
        m = measured(q, q["query"], q["target"], math.log(0.5))
        hs_chain, mmd_chain = m["prediction"]
        return {"ratio": mmd_chain["ratio"], "tolerance": mmd_chain["tolerance"], "ratio_hs_chain": hs_chain["ratio"],
                "measured_by": "verification.checks.thm_4_2.shift_bounds"}

    def risk_figures(q, m):
        parts = {k: float(v) for k, v in risk_parts({k: jnp.asarray(v) for k, v in q.items()}).items()}
        beta, delta = parts["B"] * parts["C"], parts["C"] * parts["dw"]
        r = delta / (parts["T"] + beta)
        # the configuration at the same relative shift: delta = beta = rho T there, so r = rho / (1 + rho)
        rho = r / (1.0 - r) if r < 1 else math.inf
        hs_chain, mmd_chain = m["risk"]
        return {"ratio_hs_chain": hs_chain["ratio"], "ratio_mmd_chain": mmd_chain["ratio"],
                "tolerance": hs_chain["tolerance"], "relative_shift_r": r, "delta_over_beta": delta / beta,
                "frontier": float(risk_frontier(parts["T"], beta, delta)), "configuration_rho": rho,
                "configuration_ratio_at_r": configuration_ratio(rho) if math.isfinite(rho) else 0.5,
                "T": parts["T"], "C": parts["C"], "B": parts["B"], "norm_dw": parts["dw"],
                "measured_by": "verification.checks.thm_4_2.shift_bounds"}

    def remeasure_risk(p):
        q = _np(p)
        m = measured(q, q["reference"], q["reference"], float(q["log_2eta"]) - math.log(2.0))
        figures = risk_figures(q, m)
        return {"ratio": figures["ratio_hs_chain"], **figures}

    def remeasure_frontier(p):
        q = _np(p)
        m = measured(q, q["reference"], q["reference"], float(q["log_2eta"]) - math.log(2.0))
        figures = risk_figures(q, m)
        return {"ratio": figures["ratio_hs_chain"] / figures["frontier"], **figures}

    def describe(p):
        out = _lists(p)
        if "log_2eta" in p:
            out["eta"] = 0.5 * math.exp(float(p["log_2eta"]))
        else:
            out["eta"] = 0.5
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


BUILTIN: dict[str, Callable[[], list[SearchTarget]]] = {
    "thm-4.1": thm_4_1,
    "thm-4.2": thm_4_2,
}


def builtin_targets(check_id: str) -> list[SearchTarget]:
    builder = BUILTIN.get(check_id)
    return builder() if builder is not None else []


__all__ = ["BUILTIN", "builtin_targets", "configuration_ratio", "risk_frontier", "risk_parts", "risk_ratio",
           "thm_4_1", "thm_4_2"]
