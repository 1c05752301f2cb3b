"""Certified primitives (verification/oracles/balls.py) against an independent 60-digit Decimal reference.

Python's ``decimal`` module converts a float exactly and computes exp/ln/sqrt correctly
rounded at any precision, so it is an oracle independent of Arb. Each primitive must
(1) enclose the 60-digit value, (2) contain the float64 NumPy value up to its own
round-off, and (3) shrink as the working precision grows.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import numpy as np
import pytest

C = pytest.importorskip("verification.oracles.balls")
import itertools

from flint import arb

DIGITS = 60
PRECISIONS = (64, 128, 256)


# ---------------------------------------------------------------- the Decimal oracle


def D(x) -> Decimal:
    return Decimal(float(x))  # exact


def d_exp(x: Decimal) -> Decimal:
    return x.exp()


def d_dot(a, b) -> Decimal:
    return sum((D(u) * D(v) for u, v in zip(a, b, strict=False)), Decimal(0))


def d_mean(values) -> Decimal:
    values = list(values)
    return sum(values, Decimal(0)) / len(values)


def d_mmd2(kernel, x, y) -> Decimal:
    return (d_mean(kernel(a, b) for a in x for b in x) + d_mean(kernel(a, b) for a in y for b in y)
            - 2 * d_mean(kernel(a, b) for a in x for b in y))


def d_product_kernel(wk):
    def k(a, b):  # (x . x') exp(sum_r (w_r . x)(w_r . x')), every product exact in Decimal
        return d_dot(a, b) * d_exp(sum((d_dot(r, a) * d_dot(r, b) for r in wk), Decimal(0)))
    return k


def d_rbf(bandwidth):
    def k(a, b):
        sq = sum(((D(u) - D(v)) ** 2 for u, v in zip(a, b, strict=False)), Decimal(0))
        return d_exp(-sq / (2 * D(bandwidth) ** 2))
    return k


def d_logsumexp(logits) -> Decimal:
    top = max(logits)
    return top + sum((d_exp(l - top) for l in logits), Decimal(0)).ln()


def encloses(ball, ref: Decimal, rel: float = 1e-50) -> bool:
    """``ref`` (60-digit accurate) lies in the ball widened by the oracle's own error."""
    m, r, e = ball.mid_rad_10exp()
    scale = Decimal(10) ** int(e)
    return abs(Decimal(int(m)) * scale - ref) <= Decimal(int(r)) * scale + Decimal(rel) * abs(ref)


def contains_float(ball, value: float, budget: float) -> bool:
    """The float64 result lies within the ball widened by its round-off budget."""
    return abs(float(ball.mid()) - value) <= C.radius(ball) + budget


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1234)
    return {"x": rng.normal(size=(5, 3)), "y": rng.normal(size=(4, 3)) + 0.4,
            "wk": rng.normal(size=(2, 3)) * 1.5, "wv": rng.normal(size=(2, 3)),
            "wq": rng.normal(size=(2, 3)) * 1.5, "q": rng.normal(size=3)}


def _radii(compute):
    out = []
    for bits in PRECISIONS:
        with C.working_precision(bits):
            out.append(compute())
    return out


def _assert_shrinks(balls):
    radii = [C.radius(b) for b in balls]
    assert all(b > 0 for b in radii[:1])
    for coarse, fine in itertools.pairwise(radii):
        assert fine <= coarse * 2.0**-40, radii  # 64 more bits of midpoint: far more than 40 bits narrower
    for coarse, fine in itertools.pairwise(balls):
        assert coarse.contains(fine) or coarse.overlaps(fine)


# ---------------------------------------------------------------- conversion and comparisons


def test_float_inputs_convert_exactly():
    for value in (0.1, -1e-300, 1e300, 2.0**-1074, 1 / 3):
        with C.working_precision(20):  # far below 53 bits: the conversion must still be exact
            b = C.ball(value)
        assert b.is_exact() and b.rad() == 0
        assert C.fraction(C.rational(value)) == __import__("fractions").Fraction(value)
    m = C.ball_matrix([[0.1, 0.2], [0.3, 1e-17]])
    assert all(m[i, j].is_exact() for i in range(2) for j in range(2))


def test_non_finite_and_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="finite"):
        C.ball(float("nan"))
    with pytest.raises(ValueError, match="finite"):
        C.ball_matrix([[1.0, float("inf")]])
    with pytest.raises(ValueError, match="2-D"):
        C.ball_matrix([1.0, 2.0])
    with pytest.raises(ValueError, match="bits"), C.working_precision(4):
        pass


def test_comparisons_are_true_only_when_proven():
    one = arb(1)
    assert C.proven_le(one, one)            # equal exact balls: <= is proven
    assert not C.proven_lt(one, one)
    fuzzy = arb(1, 1e-10)                   # [1 ± 1e-10]
    assert not C.proven_le(fuzzy, one) and not C.proven_le(one, fuzzy)   # overlap: not proven either way
    assert C.proven_lt(fuzzy, arb(1.1))
    assert not C.proven_lt(arb(1.1), fuzzy)


def test_string_form_encloses_the_ball():
    with C.working_precision(128):
        third = arb(1) / 3
    text = C.to_string(third, digits=20)
    mid, rad = text.split(" ± ")
    assert abs(Decimal(mid) - Decimal(1) / Decimal(3)) <= Decimal(rad)
    assert C.to_string(arb(2)) == "2.0000000000000000000 ± 0"


def test_working_precision_restores():
    from flint import ctx
    before = ctx.prec
    with C.working_precision(300):
        assert ctx.prec == 300
    assert ctx.prec == before


# ---------------------------------------------------------------- Gram sums and MMD^2


def test_product_kernel_mmd2(data):
    x, y, wk = data["x"], data["y"], data["wk"]
    with localcontext() as c:
        c.prec = DIGITS
        ref = d_mmd2(d_product_kernel(wk), x, y)

    def compute():
        wkb = C.ball_matrix(wk)
        return C.mmd2_biased(lambda a, b: C.product_gram(a, b, wkb), C.ball_matrix(x), C.ball_matrix(y))

    balls = _radii(compute)
    assert all(encloses(b, ref) for b in balls)
    _assert_shrinks(balls)
    # float64 NumPy, with the round-off budget of the double sum: 64 eps (1 + max|logit|) sum|terms|
    z = np.concatenate([x, y])
    c = np.concatenate([np.full(len(x), 1 / len(x)), np.full(len(y), -1 / len(y))])
    keys = z @ wk.T
    terms = np.outer(c, c) * (z @ z.T) * np.exp(keys @ keys.T)
    budget = 64 * np.finfo(float).eps * (1 + np.abs(keys @ keys.T).max()) * np.abs(terms).sum()
    assert contains_float(balls[0], float(terms.sum()), budget)


def test_rbf_and_laplace_mmd2(data):
    x, y = data["x"], data["y"]
    bandwidth = 1.3
    with localcontext() as c:
        c.prec = DIGITS
        ref = d_mmd2(d_rbf(bandwidth), x, y)
    balls = _radii(lambda: C.mmd2_biased(lambda a, b: C.rbf_gram(a, b, C.ball(bandwidth)),
                                         C.ball_matrix(x), C.ball_matrix(y)))
    assert all(encloses(b, ref) for b in balls)
    _assert_shrinks(balls)
    sq = lambda a, b: ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    k = lambda a, b: np.exp(-sq(a, b) / (2 * bandwidth**2))
    value = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    assert contains_float(balls[0], value, 64 * np.finfo(float).eps * 4)
    # Laplace: the same sums with exp(-||x - y|| / bandwidth); the NumPy value within round-off
    lap = _radii(lambda: C.mmd2_biased(lambda a, b: C.laplace_gram(a, b, C.ball(bandwidth)),
                                       C.ball_matrix(x), C.ball_matrix(y)))
    kl = lambda a, b: np.exp(-np.sqrt(sq(a, b)) / bandwidth)
    assert contains_float(lap[0], kl(x, x).mean() + kl(y, y).mean() - 2 * kl(x, y).mean(),
                          64 * np.finfo(float).eps * 4)
    _assert_shrinks(lap)


def test_linear_mmd2_is_exact_rational():
    a = np.array([[0.3, -1.7], [2.5, 0.1]])
    target = np.concatenate([a, -a])            # mean exactly 0 in floating point
    prompt = np.concatenate([3 * a, -3 * a])    # different covariance, mean exactly 0
    assert C.linear_mmd2_exact(target, prompt) == 0
    shifted = prompt + 0.1
    exact = C.linear_mmd2_exact(target, shifted)
    assert exact > 0
    assert abs(float(C.fraction(exact)) - 2 * 0.1**2) < 1e-15
    with C.working_precision(64):
        b = C.mmd2_biased(C.linear_gram, C.ball_matrix(target), C.ball_matrix(prompt))
    assert b.contains(arb(0))


# ---------------------------------------------------------------- HS norms, operators


def test_hs_norm2_in_representer_form(data):
    x, y, wk, wv = data["x"], data["y"], data["wk"], data["wv"]
    z = np.concatenate([y, x])
    coef = [1 / len(y)] * len(y) + [-1 / len(x)] * len(x)
    scale = 0.7
    with localcontext() as c:
        c.prec = DIGITS
        v = [[d_dot(r, t) for r in wv] for t in z]
        k = [[d_dot(r, t) for r in wk] for t in z]
        cd = [Decimal(1) / len(y)] * len(y) + [Decimal(-1) / len(x)] * len(x)
        ref = D(scale) ** 2 * sum(cd[i] * cd[j] * sum((a * b for a, b in zip(v[i], v[j], strict=False)), Decimal(0))
                                   * d_exp(sum((a * b for a, b in zip(k[i], k[j], strict=False)), Decimal(0)))
                                   for i in range(len(z)) for j in range(len(z)))

    def compute():
        zb = C.ball_matrix(z)
        coefs = [arb(1) / len(y)] * len(y) + [arb(-1) / len(x)] * len(x)
        return C.hs_norm2(coefs, zb * C.ball_matrix(wv).transpose(), zb * C.ball_matrix(wk).transpose(),
                          C.ball(scale))

    balls = _radii(compute)
    assert all(encloses(b, ref) for b in balls)
    _assert_shrinks(balls)
    # float64: the same double sum
    vv, kk = (z @ wv.T) @ (z @ wv.T).T, (z @ wk.T) @ (z @ wk.T).T
    cn = np.array(coef)
    terms = scale**2 * np.outer(cn, cn) * vv * np.exp(kk)
    budget = 64 * np.finfo(float).eps * (1 + np.abs(kk).max()) * np.abs(terms).sum()
    assert contains_float(balls[0], float(terms.sum()), budget)


def test_apply_operator_and_feature_norm(data):
    x, wk, wv = data["x"], data["wk"], data["wv"]
    q = data["wq"] @ data["q"]  # a query in key space (d_k,)
    with C.working_precision(128):
        xb = C.ball_matrix(x)
        out = C.apply_operator([arb(1)] * len(x), xb * C.ball_matrix(wv).transpose(),
                               xb * C.ball_matrix(wk).transpose(), arb(0.5), C.ball_vector(q))
        fnorm = C.feature_norm(C.ball_vector(q))
    ref = 0.5 * ((x @ wv.T).T @ np.exp((x @ wk.T) @ q))
    for b, r in zip(out, ref, strict=False):
        assert contains_float(b, float(r), 1e-13 * np.abs(ref).max())
    assert contains_float(fnorm, math.exp(q @ q / 2), 1e-15 * math.exp(q @ q / 2))
    with pytest.raises(ValueError, match="do not match"):
        C.apply_operator([arb(1)] * len(x), xb, xb * C.ball_matrix(wk).transpose(), arb(1), C.ball_vector(data["q"]))


# ---------------------------------------------------------------- log-sum-exp, softmax, attention


@pytest.mark.parametrize("centre", [0.0, 800.0, -1000.0])
def test_logsumexp_softmax_entropy(centre):
    rng = np.random.default_rng(7)
    logits = centre + 30 * rng.normal(size=9)
    with localcontext() as c:
        c.prec = DIGITS
        ld = [D(v) for v in logits]
        ref = d_logsumexp(ld)
        ref_p = [d_exp(v - ref) for v in ld]
        ref_h = -sum((p * (v - ref) for p, v in zip(ref_p, ld, strict=False)), Decimal(0))
    balls = _radii(lambda: C.logsumexp([C.ball(v) for v in logits]))
    assert all(encloses(b, ref) for b in balls)
    _assert_shrinks(balls)
    top = logits.max()
    float_value = top + math.log(math.fsum(math.exp(v - top) for v in logits))
    assert contains_float(balls[0], float_value, 16 * np.finfo(float).eps * (1 + abs(logits).max()))
    with C.working_precision(128):
        p = C.softmax([C.ball(v) for v in logits])
        h = C.entropy([C.ball(v) for v in logits])
    assert all(encloses(b, r, rel=1e-30) for b, r in zip(p, ref_p, strict=False) if r > Decimal("1e-300"))
    assert encloses(h, ref_h, rel=1e-30)
    assert C.ball_sum(p).contains(arb(1))


def test_attention_split_encloses_numpy_and_identity(data):
    x, y, wq, wk, wv, q = data["x"], data["y"], data["wq"], data["wk"], data["wv"], data["q"]
    tokens = np.concatenate([x, y])
    logits = (tokens @ wk.T) @ (wq @ q)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    values = tokens @ wv.T
    ref = p @ values
    ref_w0 = p[:len(x)] @ values[:len(x)]
    atts = _radii(lambda: C.AttentionBalls(C.ball_matrix(wq), C.ball_matrix(wk), C.ball_matrix(wv),
                                           C.ball_matrix(x), C.ball_matrix(y), C.ball_vector(q)))
    budget = 64 * np.finfo(float).eps * (1 + np.abs(logits).max()) * np.abs(values).max()
    for att in atts:
        for a in range(wv.shape[0]):
            assert contains_float(att.attention[a], float(ref[a]), budget)
            assert contains_float(att.w0_out[a], float(ref_w0[a]), budget)
            # Theorem 3.1(a): the two paths enclose the same real number
            assert (att.attention[a] - att.w0_out[a] - att.dw_out[a]).contains(arb(0))
    _assert_shrinks([att.attention[0] for att in atts])
    _assert_shrinks([att.w0_out[1] for att in atts])


def test_attention_without_context(data):
    x, wq, wk, wv, q = data["x"], data["wq"], data["wk"], data["wv"], data["q"]
    with C.working_precision(64):
        att = C.AttentionBalls(C.ball_matrix(wq), C.ball_matrix(wk), C.ball_matrix(wv), C.ball_matrix(x),
                               C.ball_matrix(np.zeros((0, 3))), C.ball_vector(q))
    assert all(v.is_zero() for v in att.dw_out)
    with pytest.raises(ValueError, match="demonstration"):
        C.AttentionBalls(C.ball_matrix(wq), C.ball_matrix(wk), C.ball_matrix(wv), C.ball_matrix(np.zeros((0, 3))),
                         C.ball_matrix(x), C.ball_vector(q))


# ---------------------------------------------------------------- operator norms


def test_operator_norm_bounds_random_and_isometry():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(3, 5))
    exact = np.linalg.norm(w, 2)
    balls = _radii(lambda: C.operator_norm_enclosure(C.ball_matrix(w), C.float_top_singular_vector(w)))
    for b in balls:
        assert contains_float(b, exact, 8 * np.finfo(float).eps * exact)
    _assert_shrinks(balls)
    with C.working_precision(128):
        low = C.operator_norm_lower(C.ball_matrix(w), C.float_top_singular_vector(w))
        # second order: the Rayleigh bound at the float singular vector is within ~eps^2 of the norm
        assert C.proven_le(low, balls[2] + arb(0, 1e-40))
        assert C.proven_lt(balls[2] - low, arb(1e-28) * exact)
        assert C.proven_le(balls[1], C.frobenius_norm(C.ball_matrix(w)))
    # a scaled isometry: all singular values equal (a multiple eigenvalue of W^T W)
    u, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    iso = 1.7 * u[:, :3]
    with C.working_precision(128):
        b = C.operator_norm_enclosure(C.ball_matrix(iso))
    assert contains_float(b, 1.7, 16 * np.finfo(float).eps) and C.radius(b) < 1e-25
    with pytest.raises(ValueError, match="non-zero"):
        C.operator_norm_lower(C.ball_matrix(iso), np.zeros(3))
