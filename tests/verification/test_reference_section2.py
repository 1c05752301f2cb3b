"""verification/oracles/reference.py, section 2 (kernels, MMD, HS norms, operator norms, the sup gap of Theorem 3.2,
Rademacher): each function against a brute-force or closed-form evaluation on small cases."""

import itertools
import math

import numpy as np
import pytest

from verification.oracles import reference as ref

RNG = np.random.default_rng(0)


def _brute_ball_max(a, b, radius, grid=200_001):
    """max of w^T a w - 2 b^T w over the disc: the boundary on a fine angle grid, and the interior critical point."""
    theta = np.linspace(0.0, 2 * np.pi, grid)
    w = radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    best = float(np.max(np.einsum("pi,ij,pj->p", w, a, w) - 2 * w @ b))
    if np.all(np.linalg.eigvalsh(a) < 0):
        c = np.linalg.solve(a, b)
        if np.linalg.norm(c) <= radius:
            best = max(best, float(c @ a @ c - 2 * b @ c))
    return best


@pytest.mark.parametrize("a, b, radius", [
    (np.diag([1.0, -1.0]), np.array([0.0, 0.1]), 1.0),          # hard case: b orthogonal to the top eigenvector
    (np.diag([-2.0, -1.0]), np.array([0.3, -0.2]), 1.0),       # interior maximum
    (np.diag([-2.0, -1.0]), np.array([3.0, -2.0]), 0.5),       # negative definite, boundary
    (np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([0.5, 0.5]), 2.0),
    (np.zeros((2, 2)), np.array([1.0, -1.0]), 1.5),            # linear: -2 R ||b||
    (np.diag([2.0, 2.0]), np.zeros(2), 1.0),                   # degenerate top eigenspace, b = 0
])
def test_ball_maximum_matches_brute_force(a, b, radius):
    value, mu = ref.ball_maximum(a, b, radius)
    assert value == pytest.approx(_brute_ball_max(a, b, radius), rel=1e-9, abs=1e-9)
    assert mu >= max(np.linalg.eigvalsh(a)[-1], 0.0) - 1e-12


def test_ball_maximum_random_batch_against_brute_force():
    a = RNG.normal(size=(40, 2, 2))
    b = RNG.normal(size=(40, 2))
    radius = RNG.uniform(0.2, 3.0, size=40)
    values, _ = ref.ball_maximum(a, b, radius)
    for i in range(40):
        sym = 0.5 * (a[i] + a[i].T)
        assert values[i] == pytest.approx(_brute_ball_max(sym, b[i], radius[i]), rel=1e-8, abs=1e-9)


def test_sup_gap_is_the_kronecker_problem():
    """sup over W (d_v, m) of dc - 2<W, dM> + <W^T W, dS> by random W never beats the reference, which is attained."""
    m, dv = 3, 2
    s = RNG.normal(size=(m, m))
    pop = (s @ s.T, RNG.normal(size=(dv, m)), 1.0)
    emp = (np.eye(m), RNG.normal(size=(dv, m)), 0.5)
    gap = float(ref.sup_gap(pop, emp, 1.0))
    d_s, d_m = pop[0] - emp[0], pop[1] - emp[1]
    w = RNG.normal(size=(2000, dv, m))
    w /= np.linalg.norm(w.reshape(len(w), -1), axis=1)[:, None, None]
    value = lambda w: 0.5 + np.einsum("...ai,ij,...aj->...", w, d_s, w) - 2 * np.einsum("...ai,ai->...", w, d_m)  # noqa
    assert value(w).max() <= gap + 1e-12
    # projected gradient ascent on the sphere (d_s - I has a positive eigenvalue: the maximum is on it) reaches it
    for _ in range(1000):
        w = w + 0.1 * (np.einsum("ij,paj->pai", d_s, w) - d_m)
        w /= np.linalg.norm(w.reshape(len(w), -1), axis=1)[:, None, None]
    assert value(w).max() == pytest.approx(gap, rel=1e-9)


def test_kernels_and_mmd_against_loops():
    x, y, wk = RNG.normal(size=(3, 2)), RNG.normal(size=(4, 2)), RNG.normal(size=(2, 2))
    for kind, params, k in [
        ("rbf", {"bandwidth": 0.7}, lambda a, c: math.exp(-np.sum((a - c) ** 2) / (2 * 0.49))),
        ("laplace", {"bandwidth": 0.7}, lambda a, c: math.exp(-np.linalg.norm(a - c) / 0.7)),
        ("linear", {}, lambda a, c: float(a @ c)),
        ("exp", {}, lambda a, c: math.exp(a @ c)),
        ("product", {"wk": wk}, lambda a, c: float(a @ c) * math.exp((wk @ a) @ (wk @ c))),
    ]:
        g = ref.gram(kind, x, y, **params)
        assert g == pytest.approx(np.array([[k(a, c) for c in y] for a in x]), rel=1e-13)
        kxx = [[k(a, c) for c in x] for a in x]
        kyy = [[k(a, c) for c in y] for a in y]
        kxy = sum(k(a, c) for a in x for c in y)
        n, m = len(x), len(y)
        biased = np.sum(kxx) / n**2 + np.sum(kyy) / m**2 - 2 * kxy / (n * m)
        unbiased = ((np.sum(kxx) - np.trace(kxx)) / (n * (n - 1)) + (np.sum(kyy) - np.trace(kyy)) / (m * (m - 1))
                    - 2 * kxy / (n * m))
        assert ref.mmd2(x, y, kind, **params) == pytest.approx(biased, rel=1e-12, abs=1e-14)
        assert ref.mmd2(x, y, kind, estimator="unbiased", **params) == pytest.approx(unbiased, rel=1e-12, abs=1e-14)


def test_batched_mmd_equals_one_at_a_time_and_is_finite_past_overflow():
    x, y, wk = RNG.normal(size=(5, 3, 2)), RNG.normal(size=(5, 4, 2)), RNG.normal(size=(5, 2, 2))
    batched = ref.mmd2(x, y, "product", wk=wk)
    assert batched == pytest.approx([ref.mmd2(x[i], y[i], "product", wk=wk[i]) for i in range(5)], rel=1e-14)
    total = ref.log_mmd2(x[0], y[0], "product", wk=60.0 * wk[0])  # logits of several thousand
    assert total.sign == 1 and np.isfinite(total.log_abs) and total.log_abs > 709
    assert total.log_terms >= total.log_abs and total.condition >= 1


def test_hs_norm_of_the_weight_difference_is_the_double_sum():
    wk, wv = RNG.normal(size=(2, 3)), RNG.normal(size=(2, 3))
    target, prompt, log_eta = RNG.normal(size=(4, 3)), RNG.normal(size=(2, 3)), -0.3
    coef, values, keys, log_scale = ref.weight_difference(wk, wv, target, prompt, log_eta)
    hs = ref.log_hs_norm2(coef, values, keys, log_scale)
    log_hs, condition = hs.log_abs, hs.condition
    assert hs.sign == 1
    rows = list(prompt) + list(target)
    c = [1 / 2] * 2 + [-1 / 4] * 4
    direct = sum(c[i] * c[j] * (wv @ rows[i]) @ (wv @ rows[j]) * math.exp((wk @ rows[i]) @ (wk @ rows[j]))
                 for i, j in itertools.product(range(6), repeat=2))
    assert math.exp(log_hs) == pytest.approx(4 * math.exp(2 * log_eta) * direct, rel=1e-12)
    assert condition >= 1
    # Theorem 4.1 with the reference alone: ||ΔW|| <= 2 eta ||W^V||_op MMD_k
    bound = 2 * math.exp(log_eta) * ref.operator_norm(wv) * math.sqrt(ref.mmd2(target, prompt, "product", wk=wk))
    assert math.exp(0.5 * log_hs) <= bound * (1 + 1e-12)


def test_predictions_and_risk_against_loops():
    wk, wv, tokens, queries = (RNG.normal(size=s) for s in ((2, 3), (2, 3), (4, 3), (2, 3)))
    pred = ref.distilled_prediction(wk, wv, tokens, 0.2, queries)
    direct = [2 * math.exp(0.2) / 4 * sum(wv @ t * math.exp((wk @ t) @ (wk @ q)) for t in tokens) for q in queries]
    assert pred == pytest.approx(np.array(direct), rel=1e-12)
    risk = ref.kd_risk(wk, wv, tokens, 0.2, queries)
    assert risk == pytest.approx(np.mean([np.sum((wv @ q - p) ** 2) for q, p in zip(queries, direct, strict=False)]), rel=1e-12)


def test_operator_norms_taylor_features_and_sup_norm():
    a = RNG.normal(size=(3, 4))
    assert ref.operator_norm(a) == pytest.approx(math.sqrt(np.linalg.eigvalsh(a @ a.T)[-1]), rel=1e-12)
    assert ref.smallest_singular_value(a) == pytest.approx(math.sqrt(np.linalg.eigvalsh(a @ a.T)[0]), rel=1e-10)
    u, z = RNG.normal(size=3), RNG.normal(size=3)
    for order in range(4):
        expected = sum((u @ z) ** n / math.factorial(n) for n in range(order + 1))
        assert ref.taylor_features(u, order) @ ref.taylor_features(z, order) == pytest.approx(expected, rel=1e-12)
    w, c = RNG.normal(size=(2, 2)), np.array([0.5, -0.2])
    theta = np.linspace(0, 2 * np.pi, 100_001)
    brute = np.max(np.linalg.norm((c + 0.7 * np.stack([np.cos(theta), np.sin(theta)], 1)) @ w.T, axis=1))
    assert ref.sup_norm_on_ball(w, c, 0.7) == pytest.approx(brute, rel=1e-8)


def test_rademacher():
    keys = RNG.normal(size=(6, 2)) * 0.5
    k = ref.gram("exp", keys, keys)
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=6)))
    direct = 2.0 / 6 * np.mean([math.sqrt(s @ k @ s) for s in signs])
    assert ref.rademacher_exact(k, 2.0) == pytest.approx(direct, rel=1e-13)
    assert ref.rademacher_exact(k, 2.0) <= ref.rademacher_closed_form(k, 2.0) == pytest.approx(
        2.0 / 6 * math.sqrt(np.trace(k)), rel=1e-14)
