"""Certified primitives: the quantities of docs/statements.md in rigorous ball (interval) arithmetic.

A float64 number is an exact dyadic rational, so the inputs of a worst case convert
**exactly** (:func:`ball`, :func:`ball_matrix`, :func:`rational`); every operation after
that is carried out by FLINT's Arb (python-flint) with a certified error radius: the
returned ball ``[mid ± rad]`` contains the exact real value of the formula on those
inputs. Arb's exponent range is unbounded, so ``exp(800)`` neither overflows nor needs
a max shift; the working precision (bits of the midpoints) is the only accuracy knob,
set with :func:`working_precision` (escalate it when a comparison is not decided).

Comparisons are three-valued by construction: :func:`proven_le` and :func:`proven_lt`
return True only when *every* point of the left ball is below *every* point of the
right one. Overlapping balls mean "not proven", never "false".

Every function takes balls (``arb``, lists of ``arb``, ``arb_mat``) and returns balls;
the converters take float64 array-likes. Tokens are rows, as in docs/statements.md#notation (Notation):
``X (n, d)``, ``W^K (d_k, d)``, keys ``K = X W^K^T``.

python-flint is an optional dependency (``pip install 'iclkd-jax[certify]'``): this
module imports it at import time and fails with the install command when it is missing.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from fractions import Fraction

import numpy as np

INSTALL_HINT = "pip install 'iclkd-jax[certify]'"


try:
    from flint import acb_mat, arb, arb_mat, ctx, fmpq, fmpq_mat
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(f"verification.oracles.balls (iclkd verify --certify) needs python-flint: {INSTALL_HINT}") from err


# ----------------------------------------------------------------------------------------
# Precision, exact conversion, formatting, comparisons
# ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def working_precision(bits: int):
    """Sets Arb's working precision (midpoint bits) inside the block and restores it after."""
    if int(bits) < 16:
        raise ValueError(f"working_precision: bits must be >= 16, got {bits}")
    previous = ctx.prec
    ctx.prec = int(bits)
    try:
        yield
    finally:
        ctx.prec = previous


def _finite_float(x, name: str) -> float:
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"{name}: a certified input must be finite, got {value!r}")
    return value


def ball(x, name: str = "x") -> arb:
    """The float64 ``x`` as an exact ball (radius 0): ``arb(float)`` is exact at any precision."""
    return arb(_finite_float(x, name))


def ball_vector(a, name: str = "vector") -> list[arb]:
    """A 1-D float64 array-like as a list of exact balls."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return [ball(v, name) for v in arr]


def ball_matrix(a, name: str = "matrix") -> arb_mat:
    """A 2-D float64 array-like (rows = tokens) as an exact ``arb_mat``; ``(0, d)`` gives an empty matrix."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: a certified input must be finite (shape {arr.shape})")
    if arr.size == 0:
        return arb_mat(arr.shape[0], arr.shape[1])
    return arb_mat([[arb(float(v)) for v in row] for row in arr])


def rational(x, name: str = "x") -> fmpq:
    """The float64 ``x`` as the exact rational it is."""
    num, den = _finite_float(x, name).as_integer_ratio()
    return fmpq(num, den)


def rational_matrix(a, name: str = "matrix") -> fmpq_mat:
    """A 2-D float64 array-like as an exact ``fmpq_mat`` (rational linear algebra, no rounding at all)."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {arr.shape}")
    if arr.size == 0:
        return fmpq_mat(arr.shape[0], arr.shape[1])
    return fmpq_mat([[rational(v, name) for v in row] for row in arr])


def fraction(q: fmpq) -> Fraction:
    """An ``fmpq`` as a Python ``Fraction`` (exact)."""
    return Fraction(int(q.p), int(q.q))


def as_ball(q) -> arb:
    """An exact rational (``fmpq``/``Fraction``/int) as a ball at the working precision."""
    q = Fraction(q) if not isinstance(q, fmpq) else fraction(q)
    return arb(q.numerator) / arb(q.denominator)


def rows(m: arb_mat) -> list[list[arb]]:
    return [[m[i, j] for j in range(m.ncols())] for i in range(m.nrows())]


def to_string(x: arb, digits: int = 20) -> str:
    """``"midpoint ± radius"`` in decimal, an interval that contains the ball (Arb's rigorous printing).

    ``digits`` significant digits of the midpoint are printed even where they are below the radius
    (``more=True``), so the printed radius stays close to the ball's own.
    """
    if not x.is_finite():
        return "nan ± inf"
    text = x.str(digits, radius=True, more=True)
    if not text.startswith("["):
        return f"{text} ± 0"
    body = text[1:-1]
    mid, _, rad = body.rpartition("+/-")
    return f"{mid.strip() or '0'} ± {rad.strip()}"


def upper(x: arb) -> float:
    """A float64 upper bound of every point of ``x`` (rounded outward)."""
    return math.nextafter(float(x.upper()), math.inf)


def lower(x: arb) -> float:
    """A float64 lower bound of every point of ``x`` (rounded outward)."""
    return math.nextafter(float(x.lower()), -math.inf)


def radius(x: arb) -> float:
    return math.nextafter(float(x.rad()), math.inf)


def relative_radius(x: arb) -> float:
    """``rad / |mid|`` (inf when the ball contains 0 in its interior and has a zero midpoint)."""
    mid = abs(float(x.mid()))
    return radius(x) / mid if mid > 0 else (0.0 if x.rad() == 0 else math.inf)


def interval(lo: arb, hi: arb) -> arb:
    """The smallest ball containing both ``lo`` and ``hi`` (and everything between)."""
    return lo.union(hi)


def proven_le(a: arb, b: arb) -> bool:
    """True only when ``a <= b`` holds for every point of both balls (equal exact balls included)."""
    return bool(a <= b)


def proven_lt(a: arb, b: arb) -> bool:
    """True only when ``a < b`` holds for every point of both balls."""
    return bool(a < b)


def ball_max(values: Iterable[arb]) -> arb:
    """A ball containing ``max`` of the exact values (Arb's ``max`` is rigorous on balls)."""
    values = list(values)
    if not values:
        raise ValueError("ball_max of nothing")
    out = values[0]
    for v in values[1:]:
        out = out.max(v)
    return out


def ball_sum(values: Iterable[arb]) -> arb:
    total = arb(0)
    for v in values:
        total += v
    return total


def sqrt_nonnegative(x: arb) -> arb:
    """``sqrt`` of a quantity known (mathematically) to be >= 0, whose ball may straddle 0.

    Only the non-negative part of the ball can contain the exact value, so
    intersecting with ``[0, inf)`` first is rigorous; the caller states why it is >= 0.
    """
    return x.nonnegative_part().sqrt()


def norm(vector: Sequence[arb]) -> arb:
    return sqrt_nonnegative(ball_sum(v * v for v in vector))


# ----------------------------------------------------------------------------------------
# Gram matrices of the kernels of docs/statements.md and the biased (V-statistic) MMD^2
# ----------------------------------------------------------------------------------------


def _entrywise_exp(m: arb_mat) -> arb_mat:
    out = arb_mat(m.nrows(), m.ncols())
    for i in range(m.nrows()):
        for j in range(m.ncols()):
            out[i, j] = m[i, j].exp()
    return out


def exp_gram(u: arb_mat, z: arb_mat) -> arb_mat:
    """The softmax kernel ``kappa(u_i, z_j) = exp(u_i . z_j)`` (docs/statements.md#notation, Notation)."""
    return _entrywise_exp(u * z.transpose())


def linear_gram(x: arb_mat, y: arb_mat) -> arb_mat:
    """``x_i . y_j``."""
    return x * y.transpose()


def product_gram(x: arb_mat, y: arb_mat, wk: arb_mat) -> arb_mat:
    """Theorem 4.1's kernel ``k(x, x') = (x . x') exp((W^K x) . (W^K x'))``."""
    lin = linear_gram(x, y)
    ex = exp_gram(x * wk.transpose(), y * wk.transpose())
    out = arb_mat(lin.nrows(), lin.ncols())
    for i in range(lin.nrows()):
        for j in range(lin.ncols()):
            out[i, j] = lin[i, j] * ex[i, j]
    return out


def squared_distance_matrix(x: arb_mat, y: arb_mat) -> arb_mat:
    """``||x_i - y_j||^2`` from explicit differences (no ``|x|^2 + |y|^2 - 2 x.y`` cancellation)."""
    out = arb_mat(x.nrows(), y.nrows())
    for i in range(x.nrows()):
        for j in range(y.nrows()):
            out[i, j] = ball_sum((x[i, k] - y[j, k]) ** 2 for k in range(x.ncols()))
    return out


def rbf_gram(x: arb_mat, y: arb_mat, bandwidth: arb) -> arb_mat:
    """Gaussian RBF ``exp(-||x - y||^2 / (2 bandwidth^2))`` (the library's convention, ``iclkd_jax.rbf_kernel``)."""
    sq = squared_distance_matrix(x, y)
    scale = -1 / (2 * bandwidth * bandwidth)
    out = arb_mat(sq.nrows(), sq.ncols())
    for i in range(sq.nrows()):
        for j in range(sq.ncols()):
            out[i, j] = (sq[i, j] * scale).exp()
    return out


def laplace_gram(x: arb_mat, y: arb_mat, bandwidth: arb) -> arb_mat:
    """Laplace ``exp(-||x - y|| / bandwidth)`` (Euclidean norm; ``iclkd_jax.laplace_kernel``)."""
    sq = squared_distance_matrix(x, y)
    out = arb_mat(sq.nrows(), sq.ncols())
    for i in range(sq.nrows()):
        for j in range(sq.ncols()):
            out[i, j] = (-sqrt_nonnegative(sq[i, j]) / bandwidth).exp()
    return out


def gram_mean(m: arb_mat) -> arb:
    """``(1/(rows cols)) sum_ij m_ij``."""
    return ball_sum(m[i, j] for i in range(m.nrows()) for j in range(m.ncols())) / (m.nrows() * m.ncols())


def mmd2_biased(gram, x: arb_mat, y: arb_mat) -> arb:
    """The biased (V-statistic) ``MMD^2 = mean k(x, x) + mean k(y, y) - 2 mean k(x, y)`` for ``gram(a, b)``.

    It is the squared RKHS distance of the empirical mean embeddings, so it is >= 0 for a
    positive-definite kernel; the ball may still straddle 0 when the exact value is tiny.
    """
    return gram_mean(gram(x, x)) + gram_mean(gram(y, y)) - 2 * gram_mean(gram(x, y))


def linear_mmd2_exact(x, y) -> fmpq:
    """The linear kernel's biased MMD^2 ``||mean x - mean y||^2`` in exact rational arithmetic (floats in)."""
    xr, yr = rational_matrix(x, "x"), rational_matrix(y, "y")
    n, m, d = xr.nrows(), yr.nrows(), xr.ncols()
    total = fmpq(0)
    for k in range(d):
        diff = sum((xr[i, k] for i in range(n)), fmpq(0)) / n - sum((yr[i, k] for i in range(m)), fmpq(0)) / m
        total += diff * diff
    return total


def exp_sum(terms: Iterable[tuple[Fraction, Fraction]]) -> arb:
    """``sum_t q_t exp(e_t)`` for exact rational coefficients ``q_t`` and exponents ``e_t``.

    Terms with equal exponents are grouped and their coefficients summed exactly before any
    ball is formed, so a sum that cancels exactly (an attained equality written as a
    difference) comes out as the exact ball 0 instead of ``[0 ± radius]``.
    """
    grouped: dict[Fraction, Fraction] = {}
    for q, e in terms:
        if q:
            grouped[e] = grouped.get(e, Fraction(0)) + q
    return ball_sum(as_ball(q) * as_ball(e).exp() for e, q in grouped.items() if q)


def rayleigh_quotient_exact(w, v) -> Fraction:
    """``|W v|^2 / |v|^2`` in exact rationals for float64 ``W`` and ``v``: a lower bound of ``||W||_op^2``."""
    w = np.asarray(w, np.float64)
    vf = [Fraction(float(x)) for x in np.asarray(v, np.float64)]
    if not any(vf):
        raise ValueError("rayleigh_quotient_exact: v must be non-zero")
    wv = [sum((Fraction(float(a)) * b for a, b in zip(row, vf, strict=False)), Fraction(0)) for row in w]
    return sum((x * x for x in wv), Fraction(0)) / sum((x * x for x in vf), Fraction(0))


def operator_norm_squared_lower_exact(w) -> Fraction:
    """The largest exact Rayleigh quotient ``|W v|^2/|v|^2`` over a few float candidates ``v``: the top
    right-singular vector, the same with entries below ``1e-12`` of its norm set to 0, and the coordinate
    vectors (exactly ``max_k (W^T W)_kk``). Every candidate gives a rigorous lower bound of ``||W||_op^2``;
    the cleaned and coordinate vectors make it exact when ``W^T W`` is an exact multiple of the identity on
    a coordinate block (the attained configurations)."""
    w = np.asarray(w, np.float64)
    top = float_top_singular_vector(w)
    cleaned = np.where(np.abs(top) < 1e-12 * np.linalg.norm(top), 0.0, top)
    candidates = [top, cleaned] + list(np.eye(w.shape[1]))
    return max(rayleigh_quotient_exact(w, v) for v in candidates if np.any(v))


# ----------------------------------------------------------------------------------------
# Operators in representer form W = scale * sum_i c_i v_i ⊗ phi(k_i) (docs/statements.md#operators)
# ----------------------------------------------------------------------------------------


def hs_norm2(coef: Sequence[arb], values: arb_mat, keys: arb_mat, scale: arb) -> arb:
    """``||W||_HS^2 = scale^2 sum_ij c_i c_j <v_i, v_j> exp(k_i . k_j)`` (exact kernel form).

    A difference of exponentially large terms when the coefficients have mixed signs:
    the ball's radius grows with ``2^-prec * sum |terms|``, so escalate the precision
    when it straddles a decision.
    """
    vv = values * values.transpose()
    kk = keys * keys.transpose()
    n = len(coef)
    total = ball_sum(coef[i] * coef[j] * vv[i, j] * kk[i, j].exp() for i in range(n) for j in range(n))
    return scale * scale * total


def apply_operator(coef: Sequence[arb], values: arb_mat, keys: arb_mat, scale: arb, z: Sequence[arb]) -> list[arb]:
    """``W phi(z) = scale * sum_i c_i v_i exp(k_i . z)`` (a ``d_v`` vector of balls)."""
    if len(z) != keys.ncols() or len(coef) != keys.nrows() or values.nrows() != keys.nrows():
        raise ValueError(f"apply_operator: coef ({len(coef)},), values ({values.nrows()}, {values.ncols()}), "
                         f"keys ({keys.nrows()}, {keys.ncols()}) and z ({len(z)},) do not match")
    logits = [ball_sum(keys[i, k] * z[k] for k in range(keys.ncols())) for i in range(keys.nrows())]
    weights = [coef[i] * logits[i].exp() for i in range(len(coef))]
    return [scale * ball_sum(weights[i] * values[i, a] for i in range(len(coef))) for a in range(values.ncols())]


def feature_norm(z: Sequence[arb]) -> arb:
    """``||phi(z)|| = exp(||z||^2 / 2)`` for the exact feature map of the softmax kernel."""
    return (ball_sum(v * v for v in z) / 2).exp()


# ----------------------------------------------------------------------------------------
# Log-sum-exp, softmax, softmax attention and its Theorem 3.1(a) split
# ----------------------------------------------------------------------------------------


def logsumexp(logits: Sequence[arb]) -> arb:
    """``log sum_j exp(l_j)``; shifted by the largest midpoint only for accuracy (no overflow in Arb)."""
    if not logits:
        raise ValueError("logsumexp of no logits")
    shift = arb(max(float(l.mid()) for l in logits))
    return shift + ball_sum((l - shift).exp() for l in logits).log()


def softmax(logits: Sequence[arb]) -> list[arb]:
    """``p_j = exp(l_j - logsumexp(l))``."""
    log_d = logsumexp(logits)
    return [(l - log_d).exp() for l in logits]


def entropy(logits: Sequence[arb]) -> arb:
    """Attention entropy ``H = -sum_j p_j log p_j`` in nats, accurate also for very sharp attention.

    With ``u_j = l_j - m`` (``m`` the largest midpoint, one index ``t`` attaining it), ``w_j = exp(u_j)``:
    ``H = log1p(sum_{j != t} w_j) - sum_{j != t} (w_j / S) u_j``, ``S = 1 + sum_{j != t} w_j``: no difference of
    nearly equal numbers, so the ball stays relatively tight when ``H`` is as small as ``e^-800``.
    """
    if not logits:
        raise ValueError("entropy of no logits")
    mids = [float(l.mid()) for l in logits]
    top = mids.index(max(mids))
    shift = logits[top]
    others = [l - shift for j, l in enumerate(logits) if j != top]
    weights = [u.exp() for u in others]
    rest = ball_sum(weights)
    total = 1 + rest
    return rest.log1p() - ball_sum(w * u for w, u in zip(weights, others, strict=False)) / total


def matvec(m: arb_mat, v: Sequence[arb]) -> list[arb]:
    return [ball_sum(m[i, k] * v[k] for k in range(m.ncols())) for i in range(m.nrows())]


class AttentionBalls:
    """Theorem 3.1(a) for one query token, every piece enclosed.

    Attributes:
      logits: ``l_j = k_j . q`` over ``[X_D; X_Q]`` (exact products of the float inputs, rounded
        only when the working precision cannot hold them).
      log_partition: ``log D' = logsumexp(l)``.
      attention: ``Attn(x') = sum_j softmax(l)_j v_j`` (the softmax path).
      w0_out, dw_out: ``W_0 phi(q)`` and ``ΔW phi(q)`` in representer form,
        ``(1/D') sum_{i<=N} v_i exp(k_i . q)`` and the same over the query context (the kernel path).
      values: ``v_j`` rows of ``[X_D; X_Q] W^V^T``.
    """

    def __init__(self, wq: arb_mat, wk: arb_mat, wv: arb_mat, demos: arb_mat, context: arb_mat,
                 query: Sequence[arb]):
        n, m = demos.nrows(), context.nrows()
        if n < 1:
            raise ValueError(f"attention needs at least one demonstration, got demos with {n} rows")
        q = matvec(wq, query)
        tokens = [[demos[i, k] for k in range(demos.ncols())] for i in range(n)] + \
                 [[context[i, k] for k in range(context.ncols())] for i in range(m)]
        keys = [matvec(wk, t) for t in tokens]
        self.values = [matvec(wv, t) for t in tokens]
        self.logits = [ball_sum(a * b for a, b in zip(k, q, strict=False)) for k in keys]
        self.log_partition = logsumexp(self.logits)
        p = [(l - self.log_partition).exp() for l in self.logits]
        dv = wv.nrows()
        self.attention = [ball_sum(p[j] * self.values[j][a] for j in range(n + m)) for a in range(dv)]
        inverse_partition = (-self.log_partition).exp()

        def representer(rows_: range) -> list[arb]:
            if not len(rows_):
                return [arb(0)] * dv
            coef = [arb(1)] * len(rows_)
            vals = arb_mat([self.values[j] for j in rows_])
            ks = arb_mat([keys[j] for j in rows_])
            return apply_operator(coef, vals, ks, inverse_partition, q)

        self.w0_out = representer(range(n))
        self.dw_out = representer(range(n, n + m))
        self.n_demos, self.n_context = n, m


# ----------------------------------------------------------------------------------------
# Operator norms: a rigorous lower bound at a float singular vector, rigorous upper bounds
# ----------------------------------------------------------------------------------------


def operator_norm_lower(w: arb_mat, v) -> arb:
    """A ball containing ``||W v|| / ||v||`` for the float64 vector ``v`` (exact): its every point is a
    rigorous LOWER bound candidate for ``||W||_op`` (``||W||_op >= ||W v|| / ||v||`` for every v != 0),
    so ``.lower()`` of the result is a certified lower bound. At a float top right-singular vector the
    Rayleigh quotient is accurate to second order (``O(eps^2)`` relative)."""
    vb = ball_vector(v, "v")
    if all(x.is_zero() for x in vb):
        raise ValueError("operator_norm_lower: v must be non-zero")
    return norm(matvec(w, vb)) / norm(vb)


def frobenius_norm(w: arb_mat) -> arb:
    """``||W||_F >= ||W||_op``: a crude rigorous upper bound."""
    return sqrt_nonnegative(ball_sum(w[i, j] ** 2 for i in range(w.nrows()) for j in range(w.ncols())))


def gram_eigenvalue_bounds(w: arb_mat) -> tuple[arb, arb]:
    """Rigorous ``(lower, upper)`` balls for ``lambda_max(W^T W) = ||W||_op^2`` from Arb's eigenvalue
    enclosures of the symmetric matrix ``W^T W`` (``acb_mat.eig(multiple=True)``: clusters of equal
    eigenvalues, as for an isometry, are enclosed together). Every eigenvalue lies in one of the returned
    enclosures, so ``max_i lower(E_i) <= lambda_max <= max_i upper(E_i)``."""
    gram = w.transpose() * w if w.ncols() <= w.nrows() else w * w.transpose()  # same nonzero spectrum
    eigenvalues = acb_mat(gram).eig(multiple=True)
    reals = [e.real for e in eigenvalues]
    lo = ball_max(arb(r.lower()) for r in reals)
    hi = ball_max(arb(r.upper()) for r in reals)
    return lo, hi


def operator_norm_enclosure(w: arb_mat, singular_vector=None) -> arb:
    """A ball ``[lo, hi]`` containing ``||W||_op``.

    ``lo`` = the larger of ``||W v||/||v||`` at the float singular vector ``v`` (when given) and
    ``sqrt`` of the eigenvalue enclosure's lower end; ``hi`` = the smaller of the Frobenius norm and
    ``sqrt`` of the enclosure's upper end. Raises ``ValueError`` when Arb cannot isolate the
    eigenvalues at this precision (escalate).
    """
    try:
        lam_lo, lam_hi = gram_eigenvalue_bounds(w)
    except ValueError as err:
        raise ValueError(f"operator_norm_enclosure: eigenvalue enclosure failed at {ctx.prec} bits ({err})") from None
    lo = arb(sqrt_nonnegative(lam_lo).lower())
    if singular_vector is not None:
        lo = lo.max(arb(operator_norm_lower(w, singular_vector).lower()))
    hi = arb(sqrt_nonnegative(lam_hi).upper()).min(arb(frobenius_norm(w).upper()))
    if not proven_le(lo, hi):  # both are rigorous, so they cannot cross; guard against misuse anyway
        raise ValueError("operator_norm_enclosure: lower bound above upper bound")
    return interval(lo, hi)


def float_top_singular_vector(w) -> np.ndarray:
    """The float64 top right-singular vector of ``w`` (NumPy); only ever used through a certified bound."""
    _, _, vt = np.linalg.svd(np.asarray(w, np.float64))
    return vt[0]
