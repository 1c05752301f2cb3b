"""the linear special case's certificate claims (docs/statements.md#thm-linear): its recorded worst case re-evaluated in
ball arithmetic (``iclkd verify --certify``; the hook ``certificate_claims`` of verification.core.protocol).

worst_case keys (float64 arrays as nested lists; tokens are rows):
the attention keys of thm-3.1a; optional ``attention_out, dual_out (Q, d_v)``; regression
``xs (N, d_x), ys (N, d_y), xq (Q, d_x), w_init (d_y, d_x), learning_rate``; optional ``prediction,
gd (Q, d_y)``; optional ``eps``. Decided in exact rational arithmetic.
"""

from __future__ import annotations

from fractions import Fraction

from verification.oracles.claims import Claim
from verification.oracles.instances import (
    array,
    context_tokens,
    fdot,
    fmatvec,
    fmax_error,
    fractions,
    queries_of,
    unit_roundoff,
)


def claims(wc: dict) -> list[Claim]:
    """Linear attention = ``(W_0 + ΔW) q`` (Dai et al.) and one LSA layer = one GD step (von Oswald et al.).

    Everything is polynomial in the inputs, so it is decided in **exact rational arithmetic** (no ball):
    the dual-form identity and the LSA = GD identity hold exactly (difference 0) on the instance, and the
    recorded library outputs are within the check's ``8 (n + d) eps`` of the exact values, relative to the
    sum of absolute terms (the check's scale), or provably not.
    """
    eps = Fraction(unit_roundoff(wc))
    wq, wk, wv = (fractions(array(wc, k)) for k in ("wq", "wk", "wv"))
    demos_f = array(wc, "demos")
    context_f = context_tokens(wc, demos_f.shape[1])
    demos, context, queries = fractions(demos_f), fractions(context_f) if context_f.size else [], \
        fractions(queries_of(wc))
    tokens = demos + context
    keys = [fmatvec(wk, t) for t in tokens]
    values = [fmatvec(wv, t) for t in tokens]
    dv, dk = len(wv), len(wk)
    attention, scale = [], Fraction(0)
    for x in queries:
        q = fmatvec(wq, x)
        terms = [[v[a] * fdot(k, q) for a in range(dv)] for k, v in zip(keys, values, strict=False)]
        attention.append([sum((t[a] for t in terms), Fraction(0)) for a in range(dv)])
        scale = max(scale, sum((max(abs(x) for x in t) for t in terms), Fraction(0)))
    w0 = [[sum((values[i][a] * keys[i][b] for i in range(len(demos))), Fraction(0)) for b in range(dk)]
          for a in range(dv)]
    dw = [[sum((values[i][a] * keys[i][b] for i in range(len(demos), len(tokens))), Fraction(0)) for b in range(dk)]
          for a in range(dv)]
    dual = [[fdot([w0[a][b] + dw[a][b] for b in range(dk)], fmatvec(wq, x)) for a in range(dv)] for x in queries]
    identity_gap = max(abs(a - b) for ra, rb in zip(attention, dual, strict=False) for a, b in zip(ra, rb, strict=False))
    n, d = len(tokens), max(demos_f.shape[1], dk)
    tol = 8 * (n + d) * eps
    claims = [Claim("|sum_j v_j (k_j . q) - (W_0 + ΔW) q| = 0 exactly (dual form, rational arithmetic)",
                    identity_gap, Fraction(0), headline=True)]
    scale = max(scale, Fraction(1, 10**300))
    for key in ("attention_out", "dual_out"):
        if key in wc:
            claims.append(Claim(f"max|{key} (library) - exact| / S <= 8 (n + d) eps = {float(tol):.3g}",
                                fmax_error(array(wc, key), attention) / scale, tol))
    if "xs" in wc:
        claims += _von_oswald_claims(wc, eps)
    return claims


def _von_oswald_claims(wc: dict, eps: Fraction) -> list[Claim]:
    xs, ys, xq = (fractions(array(wc, k)) for k in ("xs", "ys", "xq"))
    w = fractions(array(wc, "w_init"))
    lr = Fraction(float(wc["learning_rate"]))
    n, dx, dy = len(xs), len(xs[0]), len(ys[0])
    residuals = [[fdot(w[a], x) - y[a] for a in range(dy)] for x, y in zip(xs, ys, strict=False)]
    w1 = [[w[a][b] - lr / n * sum((r[a] * x[b] for r, x in zip(residuals, xs, strict=False)), Fraction(0)) for b in range(dx)]
          for a in range(dy)]
    gd = [fmatvec(w1, q) for q in xq]
    # the LSA layer by its definition: y-part of e + (eta/N) sum_i (0, W x_i - y_i)(x_i . x_q), read as -y
    lsa = [[-(-fdot(w[a], q) + lr / n * sum((r[a] * fdot(x, q) for r, x in zip(residuals, xs, strict=False)), Fraction(0)))
            for a in range(dy)] for q in xq]
    gap = max(abs(a - b) for ra, rb in zip(lsa, gd, strict=False) for a, b in zip(ra, rb, strict=False))
    claims = [Claim("von Oswald LSA layer = one GD step exactly (rational arithmetic)", gap, Fraction(0))]
    scale = max(max(abs(v) for q in xq for v in fmatvec(w, q)),
                lr / n * max(sum((max(abs(v) for v in r) * abs(fdot(x, q)) for r, x in zip(residuals, xs, strict=False)),
                                 Fraction(0)) for q in xq), Fraction(1, 10**300))
    tol = 8 * (n + dx + dy) * eps
    for key in ("prediction", "gd"):
        if key in wc:
            claims.append(Claim(f"max|{key} (library) - exact GD prediction| / S <= 8 (N + d) eps = {float(tol):.3g}",
                                fmax_error(array(wc, key), gd) / scale, tol))
    return claims
