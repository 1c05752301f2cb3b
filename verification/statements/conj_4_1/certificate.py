"""Conjecture 4.1's certificate claims (docs/statements.md#conj-4-1): its recorded worst case re-evaluated in
ball arithmetic (``iclkd verify --certify``; the hook ``certificate_claims`` of verification.core.protocol).

worst_case keys (float64 arrays as nested lists; tokens are rows):
(its counterexample) ``kernel`` (``linear | rbf | laplace | product``, or a check's name such as
``rbf-10x``), ``wk, wv, target, prompt``, ``log_eta`` (default ``log(1/2)``, i.e. ``2 eta = 1``),
``bandwidth`` (rbf/laplace), ``threshold`` (the ``c_hat`` that refutes; default 1e3).
"""

from __future__ import annotations

from fractions import Fraction

from verification.oracles import balls as C
from verification.oracles.balls import arb
from verification.oracles.claims import Claim
from verification.oracles.instances import (
    ShiftBalls,
)


def _kernel_kind(name: str) -> str:
    for kind in ("linear", "rbf", "laplace", "product"):
        if name.startswith(kind):
            return kind
    raise ValueError(f"conj-4.1 certificate: unknown kernel {name!r}")


def claims(wc: dict) -> list[Claim]:
    """A counterexample to ``||ΔW|| <= c MMD_k0`` (normalised as in the check: ``k0 <= 1`` on the support).

    Linear kernel: ``MMD^2 = ||mean 𝒟 - mean 𝒬||^2`` is computed in exact rational arithmetic. When it is
    exactly 0 while ``||ΔW||_HS > 0`` is proven, no constant c can hold on this instance: the conjecture
    is refuted outright. Otherwise (and for the other kernels) the claim proven is the check's refutation
    criterion ``c_hat = ||ΔW|| / (2 eta ||W^V||_op M_x M_phi MMD_k0) > threshold``.
    """
    kind = _kernel_kind(str(wc.get("kernel", "linear")))
    s = ShiftBalls(wc)
    threshold = float(wc.get("threshold", 1e3))
    positive = Claim("0 < ||ΔW||_HS", arb(0), s.dw, strict=True)
    if kind == "linear":
        exact = C.linear_mmd2_exact(s.target_f, s.prompt_f)
        if exact == 0:
            return [positive, Claim("MMD_linear^2 = ||mean 𝒟 - mean 𝒬||^2 <= 0, i.e. = 0 exactly (rational "
                                    "arithmetic): no constant c can hold", Fraction(0), Fraction(0), headline=True)]
        mmd2 = C.as_ball(C.fraction(exact))
    else:
        x, y = s.target, s.prompt
        if kind == "product":
            gram = lambda a, b: C.product_gram(a, b, s.wk)
        else:
            bandwidth = C.ball(wc["bandwidth"], "bandwidth")
            gram = (lambda a, b: C.rbf_gram(a, b, bandwidth)) if kind == "rbf" else \
                (lambda a, b: C.laplace_gram(a, b, bandwidth))
        mmd2 = C.mmd2_biased(gram, x, y)
    m_x, m_phi = s.supports()
    if kind == "linear":
        mmd2 = mmd2 / (m_x * m_x)
    elif kind == "product":
        mmd2 = mmd2 / (m_x * m_phi) ** 2
    denominator = 2 * s.eta * s.op_norm * m_x * m_phi * C.sqrt_nonnegative(mmd2)
    return [positive, Claim(f"threshold {threshold:g} x 2 eta ||W^V||_op M_x M_phi MMD_k0 < ||ΔW||_HS "
                                      f"(c_hat > {threshold:g})", threshold * denominator, s.dw, strict=True)]
