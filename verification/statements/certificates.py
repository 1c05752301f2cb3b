"""Certificates: a check's worst case (or a conjecture's counterexample) re-evaluated in ball arithmetic.

``iclkd verify --certify`` hands each :class:`~verification.registry.CheckResult` to
:func:`certify_result`. Its ``worst_case`` holds the exact float64 inputs of one instance
(keys below, documented again in each check's docstring); a certifier turns them into
:class:`Claim` s, each an inequality ``lhs <= rhs`` between two balls of
:mod:`verification.certify` (or between two exact rationals), and decides it:

* ``proven``: ``upper(lhs) <= lower(rhs)`` for every claim (for a conjecture: the
  counterexample is proven to be one);
* ``violation proven``: ``lower(lhs) > upper(rhs)`` for some claim: the instance is a
  certified failure (a false theorem, a wrong library value, or a mutated bound);
* ``not proven``: the balls overlap at every precision tried (64, 128, 256, 512 bits);
  the widths that prevented a decision are reported;
* ``not applicable``: a probabilistic statement, or nothing was recorded to certify.

What a certificate proves is stated in its ``claim`` strings; it is a statement about
the real numbers defined by the formulas of THEOREMS.md on those exact inputs, never
about a float computation, except where a claim names a recorded float value (the
library's output) and bounds its distance to the exact value.

worst_case keys (float64 arrays as nested lists; tokens are rows):

* thm-3.1a, thm-3.1b: ``wq, wk (d_k, d)``, ``wv (d_v, d)``, ``demos (N, d)``, ``context (M, d)``,
  ``queries (Q, d)`` or ``query (d,)``; optional library outputs ``w0_out, dw_out (Q, d_v)`` (3.1a: the decomposition;
  3.1b: the kernel-form KD steps ``-eta grad L(0)`` applied to ``phi(q)``; with one query, 3.1b's optional
  ``log_eta`` is the library's step size), ``op_out (Q, d_v)`` (3.1a:
  the representer operator ``W_0`` applied), ``tolerance`` (relative to ``max|v_j|``; default
  ``64 eps (1 + max|logit|)``). Every check may give ``eps`` or ``dtype`` (``"float32"``): the unit
  round-off its tolerance is derived with (float64's by default); inputs of a float32 case are float32
  values, exact in float64; ``dtype_bits`` (64 or 32) is read as the dtype.
* thm-linear: the same attention keys; optional ``attention_out, dual_out (Q, d_v)``; regression
  ``xs (N, d_x), ys (N, d_y), xq (Q, d_x), w_init (d_y, d_x), learning_rate``; optional ``prediction,
  gd (Q, d_y)``; optional ``eps``.
* lemma-eta: ``logits (R, N+M)``, ``n_demos``, ``n_context``; library ``log_partition, log_eta,
  log_eta_context, entropy (R,)``; optional ``eps``.
* thm-4.1: ``wk (d_k, d)``, ``wv (d_v, d)``, ``target (m, d)`` (𝒟), ``prompt (n, d)`` (𝒬), ``log_eta``.
* thm-4.2: the thm-4.1 keys plus ``queries (Q, d)`` and ``reference (R, d)`` (the risk's sample).
* conj-4.1 (its counterexample): ``kernel`` (``linear | rbf | laplace | product``, or a check's name such as
  ``rbf-10x``), ``wk, wv, target, prompt``, ``log_eta`` (default ``log(1/2)``, i.e. ``2 eta = 1``),
  ``bandwidth`` (rbf/laplace), ``threshold`` (the ``c_hat`` that refutes; default 1e3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np

from verification.oracles import balls as C
from verification.oracles.balls import arb
from verification.oracles.claims import Claim

FLOAT64_EPS = float(np.finfo(np.float64).eps)


# ----------------------------------------------------------------------------------------
# Helpers on worst-case dicts
# ----------------------------------------------------------------------------------------


def _array(wc: dict, key: str, ndim: int = 2) -> np.ndarray:
    if key not in wc:
        raise KeyError(f"worst_case lacks {key!r} (has {sorted(wc)})")
    value = wc[key]
    arr = np.asarray(_floats(value), dtype=np.float64)
    if ndim == 2 and arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 0)
    if arr.ndim != ndim:
        raise ValueError(f"worst_case[{key!r}] must be {ndim}-D, got shape {arr.shape}")
    return arr


def _floats(value):
    """JSON round trips write non-finite floats as strings; read them back."""
    if isinstance(value, str):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_floats(v) for v in value]
    return value


def _context(wc: dict, d: int) -> np.ndarray:
    ctx = _array(wc, "context") if "context" in wc else np.zeros((0, d))
    return ctx.reshape(0, d) if ctx.size == 0 else ctx


def _eps(wc: dict) -> float:
    """The unit round-off the check's tolerance was derived with: ``eps``, else that of ``dtype``, else float64's."""
    if "eps" in wc:
        return float(wc["eps"])
    if "dtype_bits" in wc:
        return float(np.finfo({64: np.float64, 32: np.float32, 16: np.float16}[int(wc["dtype_bits"])]).eps)
    return float(np.finfo(np.dtype(wc.get("dtype", "float64"))).eps)


def _queries(wc: dict) -> np.ndarray:
    """``queries (Q, d)``, or the single token ``query (d,)``."""
    if "queries" in wc:
        return _array(wc, "queries")
    return _array(wc, "query", ndim=1)[None, :]


def _relative_error(library: np.ndarray, exact: Sequence[Sequence[arb]], scale: arb) -> arb:
    """``max_ij |library_ij - exact_ij| / scale`` as a ball (library values converted exactly)."""
    diffs = [abs(C.ball(library[i, a]) - exact[i][a]) for i in range(library.shape[0])
             for a in range(library.shape[1])]
    return C.ball_max(diffs) / scale


# ----------------------------------------------------------------------------------------
# Theorem 3.1(a) and (b) in kernel form
# ----------------------------------------------------------------------------------------


def _attention_balls(wc: dict):
    wq, wk, wv = (_array(wc, k) for k in ("wq", "wk", "wv"))
    demos, queries = _array(wc, "demos"), _queries(wc)
    context = _context(wc, demos.shape[1])
    mats = [C.ball_matrix(a, n) for a, n in ((wq, "wq"), (wk, "wk"), (wv, "wv"), (demos, "demos"),
                                             (context, "context"))]
    atts = [C.AttentionBalls(*mats, C.ball_vector(q, "query")) for q in queries]
    values = list(atts[0].values)
    scale = C.ball_max(abs(x) for v in values for x in v)
    logits = np.concatenate([demos, context]) @ wk.T @ (queries @ wq.T).T
    tolerance = float(wc["tolerance"]) if "tolerance" in wc else 64 * _eps(wc) * (1 + float(np.abs(logits).max()))
    return atts, scale, C.ball(tolerance), tolerance


def _library_claims(wc: dict, scale: arb, tol: arb, tolerance: float, pieces: dict[str, list]) -> list[Claim]:
    claims = []
    for key, exact in pieces.items():
        if key in wc:
            lib = _array(wc, key)
            claims.append(Claim(f"max|{key} (library, float) - exact| / max|v_j| <= tolerance {tolerance:.3g}",
                                _relative_error(lib, exact, scale), tol))
    return claims


def thm_3_1a_claims(wc: dict) -> list[Claim]:
    """Theorem 3.1(a): ``Attn(x') = (W_0 + ΔW) phi(q)``.

    Proven: for every recorded query, the softmax attention ``sum_j softmax(l)_j v_j`` and the kernel form
    ``(1/D') sum_i v_i exp(k_i . q) + (1/D') sum_j v'_j exp(k'_j . q)``, two formulas evaluated independently
    in ball arithmetic on the exact inputs, differ by at most ``lhs * max|v_j|`` with ``lhs`` below the
    check's tolerance (the identity, enclosed); and, where the library's float outputs are recorded, each
    lies within ``tolerance * max|v_j|`` of the exact ``W_0 phi(q)``, ``ΔW phi(q)`` (a certificate of the
    float verdict on this instance).
    """
    atts, scale, tol, tolerance = _attention_balls(wc)
    gap = C.ball_max(abs(a.attention[i] - a.w0_out[i] - a.dw_out[i]) for a in atts for i in range(len(a.attention)))
    claims = [Claim(f"|Attn(x') - (W_0 + ΔW) phi(q)| / max|v_j| <= tolerance {tolerance:.3g} (identity enclosed)",
                    gap / scale, tol)]
    return claims + _library_claims(wc, scale, tol, tolerance, {
        "w0_out": [a.w0_out for a in atts], "dw_out": [a.dw_out for a in atts], "op_out": [a.w0_out for a in atts]})


def thm_3_1b_claims(wc: dict) -> list[Claim]:
    """Theorem 3.1(b) in kernel form: ``W_0 = -eta grad L_D(0)``, ``eta = N/(2D')`` (and ΔW with ``eta_Q = M/(2D')``).

    Proven: the KD step ``(2 eta / N) sum_{i<=N} v_i exp(k_i . q)`` with ``log eta = log(N/2) - log D'``
    (the gradient ``grad L_D(0) = -(2/N) sum_i v_i ⊗ phi(k_i)`` in representer form) and the demonstrations'
    part of the softmax attention ``sum_{i<=N} softmax(l)_i v_i`` differ by at most ``lhs * max|v_j|``
    (likewise for the context with ``eta_Q``), below the tolerance; and the recorded library steps lie within
    the tolerance of the exact ones.
    """
    atts, scale, tol, tolerance = _attention_balls(wc)
    wq, wk, wv = (_array(wc, k) for k in ("wq", "wk", "wv"))
    demos, queries = _array(wc, "demos"), _queries(wc)
    context = _context(wc, demos.shape[1])
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
        budget = 16 * _eps(wc) * (1 + float(np.abs(logits).max()) + math.log(len(logits)))
        exact = arb(att.n_demos).log() - arb(2).log() - att.log_partition
        claims.append(Claim(f"|log eta (library) - log(N / (2 D'))| <= {budget:.3g} (lemma-eta's budget)",
                            abs(C.ball(float(wc["log_eta"])) - exact), C.ball(budget)))
    return claims + _library_claims(wc, scale, tol, tolerance, {"w0_out": steps_w0, "dw_out": steps_dw})


# ----------------------------------------------------------------------------------------
# The linear special case, in exact rational arithmetic
# ----------------------------------------------------------------------------------------


def _fractions(a: np.ndarray) -> list[list[Fraction]]:
    return [[Fraction(float(v)) for v in row] for row in np.atleast_2d(a)]


def _fmatvec(m: list[list[Fraction]], v: Sequence[Fraction]) -> list[Fraction]:
    return [sum((a * b for a, b in zip(row, v, strict=False)), Fraction(0)) for row in m]


def _fdot(a: Sequence[Fraction], b: Sequence[Fraction]) -> Fraction:
    return sum((x * y for x, y in zip(a, b, strict=False)), Fraction(0))


def _fmax_error(library: np.ndarray, exact: list[list[Fraction]]) -> Fraction:
    lib = _fractions(library)
    return max((abs(a - b) for ra, rb in zip(lib, exact, strict=True) for a, b in zip(ra, rb, strict=True)),
               default=Fraction(0))


def thm_linear_claims(wc: dict) -> list[Claim]:
    """Linear attention = ``(W_0 + ΔW) q`` (Dai et al.) and one LSA layer = one GD step (von Oswald et al.).

    Everything is polynomial in the inputs, so it is decided in **exact rational arithmetic** (no ball):
    the dual-form identity and the LSA = GD identity hold exactly (difference 0) on the instance, and the
    recorded library outputs are within the check's ``8 (n + d) eps`` of the exact values, relative to the
    sum of absolute terms (the check's scale), or provably not.
    """
    eps = Fraction(_eps(wc))
    wq, wk, wv = (_fractions(_array(wc, k)) for k in ("wq", "wk", "wv"))
    demos_f = _array(wc, "demos")
    context_f = _context(wc, demos_f.shape[1])
    demos, context, queries = _fractions(demos_f), _fractions(context_f) if context_f.size else [], \
        _fractions(_queries(wc))
    tokens = demos + context
    keys = [_fmatvec(wk, t) for t in tokens]
    values = [_fmatvec(wv, t) for t in tokens]
    dv, dk = len(wv), len(wk)
    attention, scale = [], Fraction(0)
    for x in queries:
        q = _fmatvec(wq, x)
        terms = [[v[a] * _fdot(k, q) for a in range(dv)] for k, v in zip(keys, values, strict=False)]
        attention.append([sum((t[a] for t in terms), Fraction(0)) for a in range(dv)])
        scale = max(scale, sum((max(abs(x) for x in t) for t in terms), Fraction(0)))
    w0 = [[sum((values[i][a] * keys[i][b] for i in range(len(demos))), Fraction(0)) for b in range(dk)]
          for a in range(dv)]
    dw = [[sum((values[i][a] * keys[i][b] for i in range(len(demos), len(tokens))), Fraction(0)) for b in range(dk)]
          for a in range(dv)]
    dual = [[_fdot([w0[a][b] + dw[a][b] for b in range(dk)], _fmatvec(wq, x)) for a in range(dv)] for x in queries]
    identity_gap = max(abs(a - b) for ra, rb in zip(attention, dual, strict=False) for a, b in zip(ra, rb, strict=False))
    n, d = len(tokens), max(demos_f.shape[1], dk)
    tol = 8 * (n + d) * eps
    claims = [Claim("|sum_j v_j (k_j . q) - (W_0 + ΔW) q| = 0 exactly (dual form, rational arithmetic)",
                    identity_gap, Fraction(0), headline=True)]
    scale = max(scale, Fraction(1, 10**300))
    for key in ("attention_out", "dual_out"):
        if key in wc:
            claims.append(Claim(f"max|{key} (library) - exact| / S <= 8 (n + d) eps = {float(tol):.3g}",
                                _fmax_error(_array(wc, key), attention) / scale, tol))
    if "xs" in wc:
        claims += _von_oswald_claims(wc, eps)
    return claims


def _von_oswald_claims(wc: dict, eps: Fraction) -> list[Claim]:
    xs, ys, xq = (_fractions(_array(wc, k)) for k in ("xs", "ys", "xq"))
    w = _fractions(_array(wc, "w_init"))
    lr = Fraction(float(wc["learning_rate"]))
    n, dx, dy = len(xs), len(xs[0]), len(ys[0])
    residuals = [[_fdot(w[a], x) - y[a] for a in range(dy)] for x, y in zip(xs, ys, strict=False)]
    w1 = [[w[a][b] - lr / n * sum((r[a] * x[b] for r, x in zip(residuals, xs, strict=False)), Fraction(0)) for b in range(dx)]
          for a in range(dy)]
    gd = [_fmatvec(w1, q) for q in xq]
    # the LSA layer by its definition: y-part of e + (eta/N) sum_i (0, W x_i - y_i)(x_i . x_q), read as -y
    lsa = [[-(-_fdot(w[a], q) + lr / n * sum((r[a] * _fdot(x, q) for r, x in zip(residuals, xs, strict=False)), Fraction(0)))
            for a in range(dy)] for q in xq]
    gap = max(abs(a - b) for ra, rb in zip(lsa, gd, strict=False) for a, b in zip(ra, rb, strict=False))
    claims = [Claim("von Oswald LSA layer = one GD step exactly (rational arithmetic)", gap, Fraction(0))]
    scale = max(max(abs(v) for q in xq for v in _fmatvec(w, q)),
                lr / n * max(sum((max(abs(v) for v in r) * abs(_fdot(x, q)) for r, x in zip(residuals, xs, strict=False)),
                                 Fraction(0)) for q in xq), Fraction(1, 10**300))
    tol = 8 * (n + dx + dy) * eps
    for key in ("prediction", "gd"):
        if key in wc:
            claims.append(Claim(f"max|{key} (library) - exact GD prediction| / S <= 8 (N + d) eps = {float(tol):.3g}",
                                _fmax_error(_array(wc, key), gd) / scale, tol))
    return claims


# ----------------------------------------------------------------------------------------
# The learning-rate lemma
# ----------------------------------------------------------------------------------------


def lemma_eta_claims(wc: dict) -> list[Claim]:
    """``eta = N/(2D')``, ``log D' = logsumexp(l)``; entropy ``-sum p log p``.

    Proven: for every recorded row of logits, the library's ``log D'``, ``log eta``, ``log eta_Q`` lie within
    ``16 eps (1 + max|l| + log(N+M))`` (absolute) of the exact values, and its entropy within that times
    ``1 + log(N+M)`` (the check's tolerances); ``log eta_Q = -inf`` exactly when M = 0. And the lemma's
    sharp-attention bound on every row whose largest logit leads all others by a gap ``g >= 1``:
    ``H <= (N+M-1)(1+g) e^{-g}`` (with ``w_j = e^{l_j - l_max} <= e^{-g}``: ``log D' - l_max <= sum w_j`` and
    ``w (-log w) <= g e^{-g}`` for ``w <= e^{-g} <= 1/e``).
    """
    logits = _array(wc, "logits")
    n, m = int(wc["n_demos"]), int(wc["n_context"])
    eps = _eps(wc)
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
            lib = float(_floats(wc[key])[r]) if isinstance(wc[key], (list, tuple)) else float(_floats(wc[key]))
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


# ----------------------------------------------------------------------------------------
# Theorems 4.1 and 4.2: the weight shift and its propagation
# ----------------------------------------------------------------------------------------


class ShiftBalls:
    """Theorem 4.1's quantities on exact inputs: ``||ΔW||_HS``, ``MMD_k``, ``||W^V||_op``, ``eta``."""

    def __init__(self, wc: dict, *, need_norm: bool = True):
        self.wk_f, self.wv_f = _array(wc, "wk"), _array(wc, "wv")
        self.target_f, self.prompt_f = _array(wc, "target"), _array(wc, "prompt")
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


def _bound_difference(s: ShiftBalls) -> Claim:
    """Theorem 4.1 as ``0 <= Σ_ij c_i c_j exp(k_i.k_j) x_i^T (R I - W^V^T W^V) x_j``, in exact rationals grouped by
    exponent (:func:`verification.certify.exp_sum`), with ``R <= ||W^V||_op^2`` an exact Rayleigh quotient.

    The sum is ``(R MMD_k^2 - ||ΔW||^2 / (2 eta)^2)`` and ``R MMD_k^2 <= ||W^V||_op^2 MMD_k^2``, so it being
    >= 0 proves ``||ΔW|| <= 2 eta ||W^V||_op MMD_k``. At an attained equality (``W^V^T W^V`` an exact multiple
    of the identity where the samples differ) it is exactly 0, which the ball comparison of the two sides
    cannot decide.
    """
    tokens = _fractions(np.concatenate([s.prompt_f, s.target_f]))
    wk = _fractions(s.wk_f)
    keys = [_fmatvec(wk, t) for t in tokens]
    n, m = s.prompt_f.shape[0], s.target_f.shape[0]
    coef = [Fraction(1, n)] * n + [Fraction(-1, m)] * m
    r = C.operator_norm_squared_lower_exact(s.wv_f)
    wv = _fractions(s.wv_f)
    d = len(tokens[0])
    gram = [[sum((wv[a][i] * wv[a][j] for a in range(len(wv))), Fraction(0)) for j in range(d)] for i in range(d)]
    reduced = [[(r if i == j else 0) - gram[i][j] for j in range(d)] for i in range(d)]
    mx = [_fmatvec(reduced, t) for t in tokens]
    terms = ((coef[i] * coef[j] * _fdot(tokens[i], mx[j]), _fdot(keys[i], keys[j]))
             for i in range(len(tokens)) for j in range(len(tokens)))
    return Claim("0 <= Σ c_i c_j exp(k_i.k_j) x_i^T (R I - W^V^T W^V) x_j with R <= ||W^V||_op^2 an exact "
                 "Rayleigh quotient (Theorem 4.1 squared, exact rationals grouped by exponent)",
                 arb(0), C.exp_sum(terms))


def thm_4_1_claims(wc: dict, *, rhs: Callable[[ShiftBalls], arb] | None = None) -> list[Claim]:
    """Theorem 4.1 on the instance: ``||ΔW||_HS <= 2 eta ||W^V||_op MMD_k(𝒟, 𝒬)`` and ``MMD_k <= 2 M_x M_phi``.

    Proven: upper(``||ΔW||``) <= lower(bound), every piece enclosed from the exact inputs (the right side
    uses a rigorous lower bound of ``||W^V||_op``). ``rhs`` replaces the bound (tests plant a wrong constant).
    """
    s = ShiftBalls(wc)
    bound = s.bound if rhs is None else rhs(s)
    m_x, m_phi = s.supports()
    alternative = _bound_difference(s) if rhs is None else None
    return [Claim("||ΔW||_HS <= 2 eta ||W^V||_op MMD_k (Theorem 4.1)", s.dw, bound, alternative=alternative),
            Claim("MMD_k <= 2 M_x M_phi (normalised form: k~ <= 1 on the samples)", s.mmd, 2 * m_x * m_phi)]


def thm_4_2_claims(wc: dict) -> list[Claim]:
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
    queries, reference = _array(wc, "queries"), _array(wc, "reference")
    difference = _bound_difference(s)  # Theorem 4.1; both chains multiply it by a positive factor
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
    z = _fmatvec(_fractions(s.wk_f), [Fraction(float(v)) for v in x])
    tokens = np.concatenate([s.prompt_f, s.target_f])
    wk = _fractions(s.wk_f)
    keys = [_fmatvec(wk, t) for t in _fractions(tokens)]
    diffs = [[a - b for a, b in zip(k, z, strict=False)] for k in keys]
    vv = s.values * s.values.transpose()
    kz = [C.as_ball(_fdot(k, z)) for k in keys]
    total = arb(0)
    for i in range(len(keys)):
        for j in range(len(keys)):
            e = _fdot(diffs[i], diffs[j])
            if e == 0:
                continue  # exp(...) * expm1(0) = 0 exactly
            total += s.coef[i] * s.coef[j] * vv[i, j] * (kz[i] + kz[j]).exp() * C.as_ball(e).expm1()
    return (2 * s.eta) ** 2 * total


# ----------------------------------------------------------------------------------------
# Conjecture 4.1': its counterexamples
# ----------------------------------------------------------------------------------------


def _kernel_kind(name: str) -> str:
    for kind in ("linear", "rbf", "laplace", "product"):
        if name.startswith(kind):
            return kind
    raise ValueError(f"conj-4.1 certificate: unknown kernel {name!r}")


def conj_4_1_claims(wc: dict) -> list[Claim]:
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
