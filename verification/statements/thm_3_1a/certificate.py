"""Theorem 3.1(a)'s certificate claims (docs/statements.md#thm-3-1a): its recorded worst case re-evaluated in
ball arithmetic (``iclkd verify --certify``; the hook ``certificate_claims`` of verification.core.protocol).

worst_case keys (float64 arrays as nested lists; tokens are rows):
``wq, wk (d_k, d)``, ``wv (d_v, d)``, ``demos (N, d)``, ``context (M, d)``, ``queries (Q, d)`` or ``query (d,)``;
optional library outputs ``w0_out, dw_out (Q, d_v)`` (the decomposition), ``op_out (Q, d_v)`` (the
representer operator ``W_0`` applied), ``tolerance`` (relative to ``max|v_j|``; default
``64 eps (1 + max|logit|)``); ``eps`` or ``dtype`` (``"float32"``) or ``dtype_bits``: the unit round-off
the tolerance is derived with (float64's by default).
"""

from __future__ import annotations

from verification.oracles import balls as C
from verification.oracles.claims import Claim
from verification.oracles.instances import (
    attention_balls,
    library_claims,
)


def claims(wc: dict) -> list[Claim]:
    """Theorem 3.1(a): ``Attn(x') = (W_0 + ΔW) phi(q)``.

    Proven: for every recorded query, the softmax attention ``sum_j softmax(l)_j v_j`` and the kernel form
    ``(1/D') sum_i v_i exp(k_i . q) + (1/D') sum_j v'_j exp(k'_j . q)``, two formulas evaluated independently
    in ball arithmetic on the exact inputs, differ by at most ``lhs * max|v_j|`` with ``lhs`` below the
    check's tolerance (the identity, enclosed); and, where the library's float outputs are recorded, each
    lies within ``tolerance * max|v_j|`` of the exact ``W_0 phi(q)``, ``ΔW phi(q)`` (a certificate of the
    float verdict on this instance).
    """
    atts, scale, tol, tolerance = attention_balls(wc)
    gap = C.ball_max(abs(a.attention[i] - a.w0_out[i] - a.dw_out[i]) for a in atts for i in range(len(a.attention)))
    claims = [Claim(f"|Attn(x') - (W_0 + ΔW) phi(q)| / max|v_j| <= tolerance {tolerance:.3g} (identity enclosed)",
                    gap / scale, tol)]
    return claims + library_claims(wc, scale, tol, tolerance, {
        "w0_out": [a.w0_out for a in atts], "dw_out": [a.dw_out for a in atts], "op_out": [a.w0_out for a in atts]})
