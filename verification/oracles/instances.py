"""Recorded instances read into balls: the helpers every statement's certificate claims are written with.

A check records the exact float64 inputs of its worst case (``CheckResult.worst_case``: float64 arrays
as nested lists, tokens are rows); these helpers read them (a key the instance lacks raises ``KeyError``
naming it), turn them into balls of :mod:`verification.oracles.balls` or exact ``Fraction`` s, and build the
claims Theorems 3.1 and 4.1 share (docs/statements.md#thm-3-1, docs/statements.md#thm-4-1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from verification.oracles import balls as C
from verification.oracles.balls import arb
from verification.oracles.claims import Claim

FLOAT64_EPS = float(np.finfo(np.float64).eps)


# ----------------------------------------------------------------------------------------
# Helpers on worst-case dicts
# ----------------------------------------------------------------------------------------


def array(wc: dict, key: str, ndim: int = 2) -> np.ndarray:
    if key not in wc:
        raise KeyError(f"worst_case lacks {key!r} (has {sorted(wc)})")
    value = wc[key]
    arr = np.asarray(floats(value), dtype=np.float64)
    if ndim == 2 and arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 0)
    if arr.ndim != ndim:
        raise ValueError(f"worst_case[{key!r}] must be {ndim}-D, got shape {arr.shape}")
    return arr


def floats(value):
    """JSON round trips write non-finite floats as strings; read them back."""
    if isinstance(value, str):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [floats(v) for v in value]
    return value


def context_tokens(wc: dict, d: int) -> np.ndarray:
    ctx = array(wc, "context") if "context" in wc else np.zeros((0, d))
    return ctx.reshape(0, d) if ctx.size == 0 else ctx


def unit_roundoff(wc: dict) -> float:
    """The unit round-off the check's tolerance was derived with: ``eps``, else that of ``dtype``, else float64's."""
    if "eps" in wc:
        return float(wc["eps"])
    if "dtype_bits" in wc:
        return float(np.finfo({64: np.float64, 32: np.float32, 16: np.float16}[int(wc["dtype_bits"])]).eps)
    return float(np.finfo(np.dtype(wc.get("dtype", "float64"))).eps)


def queries_of(wc: dict) -> np.ndarray:
    """``queries (Q, d)``, or the single token ``query (d,)``."""
    if "queries" in wc:
        return array(wc, "queries")
    return array(wc, "query", ndim=1)[None, :]


def relative_error(library: np.ndarray, exact: Sequence[Sequence[arb]], scale: arb) -> arb:
    """``max_ij |library_ij - exact_ij| / scale`` as a ball (library values converted exactly)."""
    diffs = [abs(C.ball(library[i, a]) - exact[i][a]) for i in range(library.shape[0])
             for a in range(library.shape[1])]
    return C.ball_max(diffs) / scale


# ----------------------------------------------------------------------------------------
# Theorem 3.1(a) and (b) in kernel form
# ----------------------------------------------------------------------------------------


def attention_balls(wc: dict):
    wq, wk, wv = (array(wc, k) for k in ("wq", "wk", "wv"))
    demos, queries = array(wc, "demos"), queries_of(wc)
    context = context_tokens(wc, demos.shape[1])
    mats = [C.ball_matrix(a, n) for a, n in ((wq, "wq"), (wk, "wk"), (wv, "wv"), (demos, "demos"),
                                             (context, "context"))]
    atts = [C.AttentionBalls(*mats, C.ball_vector(q, "query")) for q in queries]
    values = list(atts[0].values)
    scale = C.ball_max(abs(x) for v in values for x in v)
    logits = np.concatenate([demos, context]) @ wk.T @ (queries @ wq.T).T
    tolerance = float(wc["tolerance"]) if "tolerance" in wc else 64 * unit_roundoff(wc) * (1 + float(np.abs(logits).max()))
    return atts, scale, C.ball(tolerance), tolerance


def library_claims(wc: dict, scale: arb, tol: arb, tolerance: float, pieces: dict[str, list]) -> list[Claim]:
    claims = []
    for key, exact in pieces.items():
        if key in wc:
            lib = array(wc, key)
            claims.append(Claim(f"max|{key} (library, float) - exact| / max|v_j| <= tolerance {tolerance:.3g}",
                                relative_error(lib, exact, scale), tol))
    return claims


def fractions(a: np.ndarray) -> list[list[Fraction]]:
    return [[Fraction(float(v)) for v in row] for row in np.atleast_2d(a)]


def fmatvec(m: list[list[Fraction]], v: Sequence[Fraction]) -> list[Fraction]:
    return [sum((a * b for a, b in zip(row, v, strict=False)), Fraction(0)) for row in m]


def fdot(a: Sequence[Fraction], b: Sequence[Fraction]) -> Fraction:
    return sum((x * y for x, y in zip(a, b, strict=False)), Fraction(0))


def fmax_error(library: np.ndarray, exact: list[list[Fraction]]) -> Fraction:
    lib = fractions(library)
    return max((abs(a - b) for ra, rb in zip(lib, exact, strict=True) for a, b in zip(ra, rb, strict=True)),
               default=Fraction(0))



class ShiftBalls:
    """Theorem 4.1's quantities on exact inputs: ``||ΔW||_HS``, ``MMD_k``, ``||W^V||_op``, ``eta``."""

    def __init__(self, wc: dict, *, need_norm: bool = True):
        self.wk_f, self.wv_f = array(wc, "wk"), array(wc, "wv")
        self.target_f, self.prompt_f = array(wc, "target"), array(wc, "prompt")
        self.wk, self.wv = C.ball_matrix(self.wk_f, "wk"), C.ball_matrix(self.wv_f, "wv")
        self.target, self.prompt = C.ball_matrix(self.target_f, "target"), C.ball_matrix(self.prompt_f, "prompt")
        self.eta = C.ball(wc.get("log_eta", math.log(0.5)), "log_eta").exp()
        n, m = self.prompt.nrows(), self.target.nrows()
        self.coef = [arb(1) / n] * n + [arb(-1) / m] * m
        tokens = np.concatenate([self.prompt_f, self.target_f])
        self.tokens = C.ball_matrix(tokens)
        self.values = self.tokens * self.wv.transpose()
        self.keys = self.tokens * self.wk.transpose()
        # ||ΔW||^2 = (2 eta)^2 sum_ij c_i c_j <v_i, v_j> exp(k_i . k_j) >= 0 (a squared norm)
        self.dw = C.sqrt_nonnegative(C.hs_norm2(self.coef, self.values, self.keys, 2 * self.eta))
        # MMD_k^2 (biased) = sum_ij c_i c_j (x_i . x_j) exp(k_i . k_j) >= 0 (k is positive definite)
        self.mmd2 = C.hs_norm2(self.coef, self.tokens, self.keys, arb(1))
        self.mmd = C.sqrt_nonnegative(self.mmd2)
        if need_norm:
            self.op_norm = C.operator_norm_enclosure(self.wv, C.float_top_singular_vector(self.wv_f))
            self.bound = 2 * self.eta * self.op_norm * self.mmd

    def supports(self) -> tuple[arb, arb]:
        """``M_x = max ||x||`` and ``M_phi = max exp(||W^K x||^2 / 2)`` over both samples (enclosed)."""
        rows_x = range(self.tokens.nrows())
        m_x = C.ball_max(C.norm([self.tokens[i, k] for k in range(self.tokens.ncols())]) for i in rows_x)
        m_phi = C.ball_max(C.feature_norm([self.keys[i, k] for k in range(self.keys.ncols())]) for i in rows_x)
        return m_x, m_phi


def bound_difference(s: ShiftBalls) -> Claim:
    """Theorem 4.1 as ``0 <= Σ_ij c_i c_j exp(k_i.k_j) x_i^T (R I - W^V^T W^V) x_j``, in exact rationals grouped by
    exponent (:func:`verification.oracles.balls.exp_sum`), with ``R <= ||W^V||_op^2`` an exact Rayleigh quotient.

    The sum is ``(R MMD_k^2 - ||ΔW||^2 / (2 eta)^2)`` and ``R MMD_k^2 <= ||W^V||_op^2 MMD_k^2``, so it being
    >= 0 proves ``||ΔW|| <= 2 eta ||W^V||_op MMD_k``. At an attained equality (``W^V^T W^V`` an exact multiple
    of the identity where the samples differ) it is exactly 0, which the ball comparison of the two sides
    cannot decide.
    """
    tokens = fractions(np.concatenate([s.prompt_f, s.target_f]))
    wk = fractions(s.wk_f)
    keys = [fmatvec(wk, t) for t in tokens]
    n, m = s.prompt_f.shape[0], s.target_f.shape[0]
    coef = [Fraction(1, n)] * n + [Fraction(-1, m)] * m
    r = C.operator_norm_squared_lower_exact(s.wv_f)
    wv = fractions(s.wv_f)
    d = len(tokens[0])
    gram = [[sum((wv[a][i] * wv[a][j] for a in range(len(wv))), Fraction(0)) for j in range(d)] for i in range(d)]
    reduced = [[(r if i == j else 0) - gram[i][j] for j in range(d)] for i in range(d)]
    mx = [fmatvec(reduced, t) for t in tokens]
    terms = ((coef[i] * coef[j] * fdot(tokens[i], mx[j]), fdot(keys[i], keys[j]))
             for i in range(len(tokens)) for j in range(len(tokens)))
    return Claim("0 <= Σ c_i c_j exp(k_i.k_j) x_i^T (R I - W^V^T W^V) x_j with R <= ||W^V||_op^2 an exact "
                 "Rayleigh quotient (Theorem 4.1 squared, exact rationals grouped by exponent)",
                 arb(0), C.exp_sum(terms))
