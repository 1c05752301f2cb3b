"""Theorem 4.1's certificate claims (docs/statements.md#thm-4-1): its recorded worst case re-evaluated in
ball arithmetic (``iclkd verify --certify``; the hook ``certificate_claims`` of verification.core.protocol).

worst_case keys (float64 arrays as nested lists; tokens are rows):
``wk (d_k, d)``, ``wv (d_v, d)``, ``target (m, d)`` (𝒟), ``prompt (n, d)`` (𝒬), ``log_eta``.
"""

from __future__ import annotations

from collections.abc import Callable

from verification.oracles.balls import arb
from verification.oracles.claims import Claim
from verification.oracles.instances import (
    ShiftBalls,
    bound_difference,
)


def claims(wc: dict, *, rhs: Callable[[ShiftBalls], arb] | None = None) -> list[Claim]:
    """Theorem 4.1 on the instance: ``||ΔW||_HS <= 2 eta ||W^V||_op MMD_k(𝒟, 𝒬)`` and ``MMD_k <= 2 M_x M_phi``.

    Proven: upper(``||ΔW||``) <= lower(bound), every piece enclosed from the exact inputs (the right side
    uses a rigorous lower bound of ``||W^V||_op``). ``rhs`` replaces the bound (tests plant a wrong constant).
    """
    s = ShiftBalls(wc)
    bound = s.bound if rhs is None else rhs(s)
    m_x, m_phi = s.supports()
    alternative = bound_difference(s) if rhs is None else None
    return [Claim("||ΔW||_HS <= 2 eta ||W^V||_op MMD_k (Theorem 4.1)", s.dw, bound, alternative=alternative),
            Claim("MMD_k <= 2 M_x M_phi (normalised form: k~ <= 1 on the samples)", s.mmd, 2 * m_x * m_phi)]
