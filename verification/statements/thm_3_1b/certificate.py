"""Theorem 3.1(b)'s certificate claims (docs/statements.md#thm-3-1b): its recorded worst case re-evaluated in
ball arithmetic (``iclkd verify --certify``; the hook ``certificate_claims`` of verification.core.protocol).

worst_case keys (float64 arrays as nested lists; tokens are rows):
the keys of thm-3.1a; the optional library outputs ``w0_out, dw_out (Q, d_v)`` are the kernel-form KD
steps ``-eta grad L(0)`` applied to ``phi(q)``; with one query, the optional ``log_eta`` is the library's
step size.
"""

from __future__ import annotations

import math

import numpy as np

from verification.oracles import balls as C
from verification.oracles.balls import arb
from verification.oracles.claims import Claim
from verification.oracles.instances import (
    array,
    attention_balls,
    context_tokens,
    library_claims,
    queries_of,
    unit_roundoff,
)


def claims(wc: dict) -> list[Claim]:
    """Theorem 3.1(b) in kernel form: ``W_0 = -eta grad L_D(0)``, ``eta = N/(2D')`` (and ΔW with ``eta_Q = M/(2D')``).

    Proven: the KD step ``(2 eta / N) sum_{i<=N} v_i exp(k_i . q)`` with ``log eta = log(N/2) - log D'``
    (the gradient ``grad L_D(0) = -(2/N) sum_i v_i ⊗ phi(k_i)`` in representer form) and the demonstrations'
    part of the softmax attention ``sum_{i<=N} softmax(l)_i v_i`` differ by at most ``lhs * max|v_j|``
    (likewise for the context with ``eta_Q``), below the tolerance; and the recorded library steps lie within
    the tolerance of the exact ones.
    """
    atts, scale, tol, tolerance = attention_balls(wc)
    wq, wk, wv = (array(wc, k) for k in ("wq", "wk", "wv"))
    demos, queries = array(wc, "demos"), queries_of(wc)
    context = context_tokens(wc, demos.shape[1])
    steps_w0, steps_dw, gaps = [], [], []
    for att, q in zip(atts, queries, strict=False):
        qb = C.matvec(C.ball_matrix(wq), C.ball_vector(q))
        outs = []
        for rows, count in ((range(att.n_demos), att.n_demos), (range(att.n_demos, att.n_demos + att.n_context),
                                                                    att.n_context)):
            if count == 0:
                outs.append([arb(0)] * wv.shape[0])
                continue
            log_eta = arb(count).log() - arb(2).log() - att.log_partition
            tokens = np.concatenate([demos, context])[list(rows)]
            tb = C.ball_matrix(tokens)
            step = C.apply_operator([arb(1)] * count, tb * C.ball_matrix(wv).transpose(),
                                    tb * C.ball_matrix(wk).transpose(), 2 * log_eta.exp() / count, qb)
            outs.append(step)
        steps_w0.append(outs[0])
        steps_dw.append(outs[1])
        p = C.softmax(att.logits)
        n = att.n_demos
        split_w0 = [C.ball_sum(p[j] * att.values[j][a] for j in range(n)) for a in range(wv.shape[0])]
        split_dw = [C.ball_sum(p[j] * att.values[j][a] for j in range(n, len(p))) for a in range(wv.shape[0])]
        gaps += [abs(s - t) for s, t in zip(outs[0] + outs[1], split_w0 + split_dw, strict=False)]
    claims = [Claim(f"|-eta grad L(0) phi(q) - softmax split| / max|v_j| <= tolerance {tolerance:.3g} "
                    "(identity enclosed, both parts)", C.ball_max(gaps) / scale, tol)]
    if "log_eta" in wc and len(atts) == 1:  # the library's step size at the recorded query
        att = atts[0]
        logits = np.concatenate([demos, context]) @ wk.T @ (wq @ queries[0])
        budget = 16 * unit_roundoff(wc) * (1 + float(np.abs(logits).max()) + math.log(len(logits)))
        exact = arb(att.n_demos).log() - arb(2).log() - att.log_partition
        claims.append(Claim(f"|log eta (library) - log(N / (2 D'))| <= {budget:.3g} (lemma-eta's budget)",
                            abs(C.ball(float(wc["log_eta"])) - exact), C.ball(budget)))
    return claims + library_claims(wc, scale, tol, tolerance, {"w0_out": steps_w0, "dw_out": steps_dw})
