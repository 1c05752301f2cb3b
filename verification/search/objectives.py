"""Building blocks of the search objectives (:mod:`verification.search.ascent`) that several statements share.

Floors and conversions, and the parts of Theorem 4.1's ``ΔW`` (docs/statements.md#thm-4-1) that the
targets of thm-4.1, thm-4.2 and conj-4.1 are written with: tokens ``[prompt; target]`` with coefficients
``[+1/n; -1/m]``, ``log ||ΔW||_HS`` and ``log MMD_k`` with the largest logit factored out
(docs/statements.md#hazards), the constraint set of the searched samples and maps.

Every statement's objective is written directly in ``jax.numpy`` from docs/statements.md (a traceable,
differentiable formula, max-shifted where it exponentiates), and its ``remeasure`` hands the best case to
the check's own measurement functions, which are compared with the independent reference by the check's
tests; ``agreement`` between the two is reported for every search, so a wrong objective formula shows up
as a disagreement rather than as a wrong verdict.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from verification.cases.shift_cases import ShiftBatch
from verification.search.projections import project_rows_to_ball, project_to_ball, project_to_box

TINY = 1e-300


def log_floor(x):
    return jnp.log(jnp.maximum(x, TINY))


def normal(key, shape, scale=1.0):
    return scale * jax.random.normal(key, shape, jnp.float64)


def as_lists(params) -> dict:
    return {k: np.asarray(v, np.float64).tolist() for k, v in params.items()}


def as_arrays(params) -> dict:
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def log_quadratic(coef, gram, keys):
    """``log sum_ij c_i c_j G_ij exp(k_i . k_j)`` with the largest logit factored out (docs/statements.md#hazards, hazards)."""
    logits = keys @ keys.T
    top = jax.lax.stop_gradient(jnp.max(logits))
    return log_floor(coef @ (gram * jnp.exp(logits - top)) @ coef) + top


def shift_parts(p):
    """Tokens ``[prompt; target]``, coefficients ``[+1/n; -1/m]``, keys and values of Theorem 4.1's ΔW."""
    prompt, target = p["prompt"], p["target"]
    n, m = prompt.shape[0], target.shape[0]
    tokens = jnp.concatenate([prompt, target])
    coef = jnp.concatenate([jnp.full((n,), 1.0 / n), jnp.full((m,), -1.0 / m)])
    return tokens, coef, tokens @ p["wk"].T, tokens @ p["wv"].T


def log_op_norm(w):
    return jnp.log(jnp.linalg.norm(w, 2))


def log_dw_and_mmd(p):
    """``(log ||ΔW||_HS / (2 eta), log MMD_k)`` (Theorem 4.1: the factor 2 eta is common to both sides)."""
    tokens, coef, keys, values = shift_parts(p)
    return (0.5 * log_quadratic(coef, values @ values.T, keys),
            0.5 * log_quadratic(coef, tokens @ tokens.T, keys))


def one_case_batch(q, log_eta: float) -> ShiftBatch:
    """One case as the checks' batch of one (their ``judge`` re-measures it against the reference)."""
    return ShiftBatch(*(np.asarray(q[k], np.float64)[None] for k in ("wk", "wv", "target", "prompt")),
                      np.array([log_eta]))


TOKEN_RADIUS = 2.0
KEY_MAP_RADIUS = 2.0   # ||W^K||_F <= 2: logits ||W^K x||^2 <= 16


def shift_init(shape, *, query_rows: int = 0, reference_rows: int = 0, eta: bool = False):
    d, dk, dv, n, m = shape

    def init(key):
        ks = jax.random.split(key, 7)
        p = {"wk": normal(ks[0], (dk, d), 1.0 / math.sqrt(d)), "wv": normal(ks[1], (dv, d), 1.0 / math.sqrt(d)),
             "target": normal(ks[2], (m, d)), "prompt": normal(ks[3], (n, d))}
        if query_rows:
            p["query"] = normal(ks[4], (query_rows, d))
        if reference_rows:
            p["reference"] = normal(ks[5], (reference_rows, d))
        if eta:
            p["log_2eta"] = jax.random.uniform(ks[6], (), jnp.float64, -3.0, 3.0)
        return p

    return init


def shift_project(p):
    out = dict(p)
    out["wk"] = project_to_ball(p["wk"], KEY_MAP_RADIUS)
    out["wv"] = project_to_ball(p["wv"], 2.0 * math.sqrt(p["wv"].shape[0]))  # every ratio is scale-free in W^V
    for name in ("target", "prompt", "query", "reference"):
        if name in p:
            out[name] = project_rows_to_ball(p[name], TOKEN_RADIUS)
    if "log_2eta" in p:
        out["log_2eta"] = project_to_box(p["log_2eta"], -6.0, 6.0)
    return out


def relative(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b)) if math.isfinite(a) and math.isfinite(b) else math.inf
