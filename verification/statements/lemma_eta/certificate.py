"""the learning-rate lemma's certificate claims (docs/statements.md#lemma-eta): its recorded worst case re-evaluated in
ball arithmetic (``iclkd verify --certify``; the hook ``certificate_claims`` of verification.core.protocol).

worst_case keys (float64 arrays as nested lists; tokens are rows):
``logits (R, N+M)``, ``n_demos``, ``n_context``; library ``log_partition, log_eta, log_eta_context,
entropy (R,)``; optional ``eps``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from verification.oracles import balls as C
from verification.oracles.balls import arb
from verification.oracles.claims import Claim
from verification.oracles.instances import (
    array,
    floats,
    unit_roundoff,
)


def claims(wc: dict) -> list[Claim]:
    """``eta = N/(2D')``, ``log D' = logsumexp(l)``; entropy ``-sum p log p``.

    Proven: for every recorded row of logits, the library's ``log D'``, ``log eta``, ``log eta_Q`` lie within
    ``16 eps (1 + max|l| + log(N+M))`` (absolute) of the exact values, and its entropy within that times
    ``1 + log(N+M)`` (the check's tolerances); ``log eta_Q = -inf`` exactly when M = 0. And the lemma's
    sharp-attention bound on every row whose largest logit leads all others by a gap ``g >= 1``:
    ``H <= (N+M-1)(1+g) e^{-g}`` (with ``w_j = e^{l_j - l_max} <= e^{-g}``: ``log D' - l_max <= sum w_j`` and
    ``w (-log w) <= g e^{-g}`` for ``w <= e^{-g} <= 1/e``).
    """
    logits = array(wc, "logits")
    n, m = int(wc["n_demos"]), int(wc["n_context"])
    eps = unit_roundoff(wc)
    claims = []
    for r, row in enumerate(logits):
        lb = [C.ball(v) for v in row]
        log_d = C.logsumexp(lb)
        exact = {"log_partition": log_d, "log_eta": arb(n).log() - arb(2).log() - log_d,
                 "log_eta_context": (arb(m).log() - arb(2).log() - log_d) if m else None,
                 "entropy": C.entropy(lb)}
        tol = 16 * eps * (1 + float(np.abs(row).max()) + math.log(n + m))
        for key, value in exact.items():
            if key not in wc:
                continue
            lib = float(floats(wc[key])[r]) if isinstance(wc[key], (list, tuple)) else float(floats(wc[key]))
            budget = tol * (1 + math.log(n + m)) if key == "entropy" else tol
            if value is None:  # M = 0: eta_Q = 0, log eta_Q = -inf exactly
                claims.append(Claim(f"row {r}: {key} = -inf exactly (M = 0)", Fraction(0 if lib == -math.inf else 1),
                                    Fraction(0)))
                continue
            if not math.isfinite(lib):
                claims.append(Claim(f"row {r}: {key} (library) finite", Fraction(1), Fraction(0)))
                continue
            claims.append(Claim(f"row {r}: |{key} (library) - exact| <= {budget:.3g}", abs(C.ball(lib) - value),
                                C.ball(budget)))
        ordered = sorted(row, reverse=True)
        if len(ordered) > 1 and ordered[0] - ordered[1] >= 1.0:
            gap = C.ball(ordered[0]) - C.ball(ordered[1])  # the exact difference of two floats
            claims.append(Claim(f"row {r}: sharp attention, entropy <= (N+M-1)(1+g) e^-g at gap g = "
                                f"{ordered[0] - ordered[1]:.4g}", C.entropy(lb),
                                (len(row) - 1) * (1 + gap) * (-gap).exp()))
    if not claims:
        raise KeyError("lemma-eta worst_case records none of log_partition, log_eta, log_eta_context, entropy, "
                       "and no row has a gap >= 1")
    return claims
