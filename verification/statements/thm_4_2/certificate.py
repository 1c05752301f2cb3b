"""Theorem 4.2's certificate claims (docs/statements.md#thm-4-2): its recorded worst case re-evaluated in
ball arithmetic (``iclkd verify --certify``; the hook ``certificate_claims`` of verification.core.protocol).

worst_case keys (float64 arrays as nested lists; tokens are rows):
the thm-4.1 keys plus ``queries (Q, d)`` and ``reference (R, d)`` (the risk's sample).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from verification.oracles import balls as C
from verification.oracles.balls import arb
from verification.oracles.claims import Claim
from verification.oracles.instances import (
    ShiftBalls,
    array,
    bound_difference,
    fdot,
    fmatvec,
    fractions,
)


def claims(wc: dict) -> list[Claim]:
    """Theorem 4.2 on the instance, every inequality of both chains.

    (i) at every query x, with ``z = W^K x``: ``||ΔW phi(z)|| <= ||ΔW|| ||phi(z)||`` (proven through the
    Cauchy-Schwarz gap >= 0, exact 0 at the attained configuration) and
    ``||ΔW|| ||phi(z)|| <= 2 eta ||W^V||_op MMD_k exp(||z||^2/2)``;
    (ii) on the reference sample's empirical measure, ``T = max ||W^V x||``, ``C = max exp(||W^K x||^2/2)``,
    ``B = max(||W̄(𝒬)||, ||W̄(𝒟)||)``: ``|L(W̄(𝒬)) - L(W̄(𝒟))| <= 2 (T + B C) C ||ΔW|| <=
    4 eta (T + B C) C ||W^V||_op MMD_k``. The prediction difference is ``ΔW phi(z)``, since
    ``f_S(x; W) = W phi(W^K x)`` is linear in W.
    """
    s = ShiftBalls(wc)
    queries, reference = array(wc, "queries"), array(wc, "reference")
    difference = bound_difference(s)  # Theorem 4.1; both chains multiply it by a positive factor
    claims = []
    for r, x in enumerate(queries):
        z = C.matvec(s.wk, C.ball_vector(x))
        phi = C.feature_norm(z)
        shift = C.norm(C.apply_operator(s.coef, s.values, s.keys, 2 * s.eta, z))
        # decided on the two sides, else through the Cauchy-Schwarz gap ||ΔW||^2 ||phi||^2 - ||ΔW phi||^2 >= 0
        # (exactly 0 when attained)
        gap = Claim(f"query {r}: 0 <= ||ΔW||^2 ||phi||^2 - ||ΔW phi||^2", arb(0), _cauchy_schwarz_gap_at(s, x))
        claims.append(Claim(f"query {r}: ||ΔW phi(W^K x)|| <= ||ΔW||_HS ||phi(W^K x)||", shift, s.dw * phi,
                            alternative=gap))
        claims.append(Claim(f"query {r}: ||ΔW|| ||phi(W^K x)|| <= 2 eta ||W^V||_op MMD_k exp(||W^K x||^2/2)",
                            s.dw * phi, s.bound * phi, alternative=difference))
    rb = C.ball_matrix(reference)
    rv, rk = rb * s.wv.transpose(), rb * s.wk.transpose()
    t_sup = C.ball_max(C.norm([rv[i, a] for a in range(rv.ncols())]) for i in range(rv.nrows()))
    c_sup = C.ball_max(C.feature_norm([rk[i, a] for a in range(rk.ncols())]) for i in range(rk.nrows()))
    n, m = s.prompt.nrows(), s.target.nrows()
    w_q = ([arb(1) / n] * n, s.prompt * s.wv.transpose(), s.prompt * s.wk.transpose())
    w_d = ([arb(1) / m] * m, s.target * s.wv.transpose(), s.target * s.wk.transpose())
    b_sup = C.sqrt_nonnegative(C.hs_norm2(*w_q, 2 * s.eta)).max(C.sqrt_nonnegative(C.hs_norm2(*w_d, 2 * s.eta)))

    def risk(w) -> arb:
        total = arb(0)
        for i in range(rb.nrows()):
            pred = C.apply_operator(*w, 2 * s.eta, [rk[i, a] for a in range(rk.ncols())])
            total += C.ball_sum((rv[i, a] - pred[a]) ** 2 for a in range(rv.ncols()))
        return total / rb.nrows()

    shift = abs(risk(w_q) - risk(w_d))
    middle = 2 * (t_sup + b_sup * c_sup) * c_sup * s.dw
    claims.append(Claim("|L(W̄(𝒬)) - L(W̄(𝒟))| <= 2 (T + B C) C ||ΔW||_HS", shift, middle))
    claims.append(Claim("2 (T + B C) C ||ΔW||_HS <= 4 eta (T + B C) C ||W^V||_op MMD_k", middle,
                        2 * (t_sup + b_sup * c_sup) * c_sup * s.bound, alternative=difference))
    return claims


def _cauchy_schwarz_gap_at(s: ShiftBalls, x: np.ndarray) -> arb:
    """``||ΔW||^2 ||phi(z)||^2 - ||ΔW phi(z)||^2`` at ``z = W^K x`` (>= 0 by Cauchy-Schwarz), exact 0 at equality.

    ``= (2 eta)^2 sum_ij c_i c_j <v_i, v_j> exp(k_i.z + k_j.z) expm1((k_i - z).(k_j - z))``: the keys and the
    exponent differences are exact rationals (products of floats), so when every key equals ``z`` (the
    attained configuration) each term is exactly 0 and the equality ``||ΔW phi(z)|| = ||ΔW|| ||phi(z)||``
    is proven rather than merely enclosed.
    """
    z = fmatvec(fractions(s.wk_f), [Fraction(float(v)) for v in x])
    tokens = np.concatenate([s.prompt_f, s.target_f])
    wk = fractions(s.wk_f)
    keys = [fmatvec(wk, t) for t in fractions(tokens)]
    diffs = [[a - b for a, b in zip(k, z, strict=False)] for k in keys]
    vv = s.values * s.values.transpose()
    kz = [C.as_ball(fdot(k, z)) for k in keys]
    total = arb(0)
    for i in range(len(keys)):
        for j in range(len(keys)):
            e = fdot(diffs[i], diffs[j])
            if e == 0:
                continue  # exp(...) * expm1(0) = 0 exactly
            total += s.coef[i] * s.coef[j] * vv[i, j] * (kz[i] + kz[j]).exp() * C.as_ball(e).expm1()
    return (2 * s.eta) ** 2 * total
