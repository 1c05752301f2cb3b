"""verification/oracles/reference.py: independent of the library, and right on cases with closed forms.

The reference is what every verdict is judged against, so it is itself checked here against
values known in closed form (never against the library).
"""

import ast
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REFERENCE = Path(__file__).resolve().parents[2] / "verification" / "oracles" / "reference.py"


def _load():
    spec = importlib.util.spec_from_file_location("iclkd_reference_under_test", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = _load()
RNG = np.random.default_rng(20260501)


def test_reference_never_imports_the_library():
    """Neither an import statement naming iclkd_jax (or JAX) nor an import of it at load time."""
    tree = ast.parse(REFERENCE.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "__import__", "import_module"):
            raise AssertionError("reference.py must not import dynamically")
    assert not imported & {"iclkd_jax", "jax", "jaxlib", "verification"}, imported
    code = (f"import importlib.util, sys; spec = importlib.util.spec_from_file_location('r', {str(REFERENCE)!r}); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "bad = [k for k in sys.modules if k.split('.')[0] in ('iclkd_jax', 'jax')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_flat_attention_has_closed_forms():
    """All logits equal c: log D' = c + log(N+M), entropy log(N+M), output = mean of the values."""
    d = 3
    wq = wk = np.eye(d)
    wv = RNG.normal(size=(2, d))
    demos = np.zeros((4, d)) + [1.0, 0.0, 0.0]
    context = np.zeros((3, d)) + [1.0, 0.0, 0.0]
    demos[:, 1:] = RNG.normal(size=(4, 2))
    context[:, 1:] = RNG.normal(size=(3, 2))
    queries = np.array([[700.0, 0.0, 0.0], [-800.0, 0.0, 0.0]])     # logits 700 and -800 (exp over/underflows)
    split = ref.attention_split(wq, wk, wv, demos, context, queries)
    np.testing.assert_allclose(split["log_partition"], [700 + math.log(7), -800 + math.log(7)], rtol=1e-15)
    np.testing.assert_allclose(split["log_eta"], math.log(4 / 2) - split["log_partition"], rtol=1e-15)
    np.testing.assert_allclose(split["log_eta_context"], math.log(3 / 2) - split["log_partition"], rtol=1e-15)
    np.testing.assert_allclose(split["entropy"], math.log(7), rtol=1e-14)
    values = np.concatenate([demos, context]) @ wv.T
    np.testing.assert_allclose(split["w0_out"], np.tile(values[:4].sum(0) / 7, (2, 1)), rtol=1e-13)
    np.testing.assert_allclose(split["output"], np.tile(values.mean(0), (2, 1)), rtol=1e-13)
    np.testing.assert_allclose(ref.softmax_attention(wq, wk, wv, np.concatenate([demos, context]), queries),
                               split["output"], rtol=1e-13)
    np.testing.assert_allclose(ref.attention_entropy(split["logits"]).astype(float), math.log(7), rtol=1e-15)


def test_attention_split_is_batched_and_matches_a_loop():
    b, d, dk, dv, n, m, q = 5, 4, 3, 2, 6, 2, 3
    wq, wk, wv = (RNG.normal(size=(b, r, d)) for r in (dk, dk, dv))
    demos, context, queries = (RNG.normal(size=(b, k, d)) for k in (n, m, q))
    batched = ref.attention_split(wq, wk, wv, demos, context, queries)
    for i in range(b):
        one = ref.attention_split(wq[i], wk[i], wv[i], demos[i], context[i], queries[i])
        for name, value in one.items():
            np.testing.assert_allclose(batched[name][i], value, rtol=1e-14, atol=1e-300)
        # the split is a convex combination: scalar loop
        for a in range(q):
            lg = [float((wk[i] @ t) @ (wq[i] @ queries[i, a])) for t in np.concatenate([demos[i], context[i]])]
            p = np.exp(np.array(lg) - max(lg))
            p /= math.fsum(p)
            vals = np.concatenate([demos[i], context[i]]) @ wv[i].T
            np.testing.assert_allclose(one["w0_out"][a], p[:n] @ vals[:n], rtol=1e-12)


def test_empty_context_gives_minus_infinite_eta_q():
    split = ref.attention_split(np.eye(2), np.eye(2), np.ones((1, 2)), RNG.normal(size=(3, 2)), np.zeros((0, 2)),
                                RNG.normal(size=(2, 2)))
    assert np.all(split["log_eta_context"] == -np.inf) and np.all(split["dw_out"] == 0)


def test_representer_operator_application_and_hs_norm():
    # one term: W = c v ⊗ phi(k): W phi(z) = c v exp(k.z), ||W||^2 = c^2 |v|^2 exp(|k|^2)
    c, v, k, z = 0.7, np.array([[1.0, -2.0]]), np.array([[0.3, 0.4, 12.0]]), np.array([[0.1, 0.2, 30.0]])
    out = ref.apply_representer([c], v, k, -5.0, z)
    np.testing.assert_allclose(out, c * v * math.exp(float(k[0] @ z[0]) - 5.0), rtol=1e-14)
    log_hs, cond = ref.hs_norm_squared([c], v, k, -5.0)
    np.testing.assert_allclose(log_hs, 2 * math.log(c) + math.log(5.0) + float(k[0] @ k[0]) - 10.0, rtol=1e-14)
    assert cond == 1.0
    # two opposite terms with equal keys cancel exactly: condition infinite, log = -inf
    log_hs, cond = ref.hs_norm_squared([1.0, -1.0], np.ones((2, 2)), np.ones((2, 3)), 0.0)
    assert log_hs == -np.inf and cond == np.inf


def test_representer_matrix_agrees_with_kernel_form_for_exact_taylor():
    """With the Taylor map at high order, the explicit matrix times phi(z) is the kernel form."""
    coef, values, keys, z = RNG.normal(size=4), RNG.normal(size=(4, 2)), 0.3 * RNG.normal(size=(4, 2)), \
        0.3 * RNG.normal(size=(3, 2))
    matrix = ref.representer_matrix(coef, values, ref.taylor_features(keys, 14), -0.5)
    np.testing.assert_allclose(ref.taylor_features(z, 14) @ matrix.T, ref.apply_representer(coef, values, keys, -0.5, z),
                               rtol=1e-12)


@pytest.mark.parametrize("order", [0, 1, 3, 5])
def test_taylor_features_reproduce_the_truncated_series(order):
    u, z = RNG.normal(size=(3, 3)), RNG.normal(size=(2, 3))
    np.testing.assert_allclose(ref.taylor_features(u, order) @ ref.taylor_features(z, order).T,
                               ref.taylor_kernel(u, z, order), rtol=1e-13)
    assert ref.taylor_features(u, order).shape[-1] == sum(3 ** n for n in range(order + 1))
    t = np.linspace(-3, 3, 61)
    err = np.abs(np.exp(t) - sum(t ** n / math.factorial(n) for n in range(order + 1)))
    assert np.all(err <= ref.taylor_remainder_bound(t, order) * (1 + 1e-12) + 1e-15)


def test_random_features_are_unbiased_with_the_stated_variance():
    """Monte Carlo with a NumPy generator: the mean within 5 standard errors, the variance within 10 %."""
    u, z = np.array([[0.3, -0.2, 0.1]]), np.array([[0.1, 0.25, -0.3]])
    reps, m = 4000, 8
    omegas = RNG.normal(size=(reps, m, 3))
    offsets = RNG.uniform(0, 2 * np.pi, size=(reps, m))
    kappa = math.exp(float(u[0] @ z[0]))
    for feats, variance in ((lambda x, i: ref.positive_random_features(x, omegas[i]),
                             ref.positive_feature_relative_variance(u, z)),
                            (lambda x, i: ref.trig_random_features(x, omegas[i], offsets[i]),
                             ref.trig_feature_relative_variance(u, z))):
        est = np.array([(feats(u, i) @ feats(z, i).T).item() for i in range(reps)]) / kappa - 1
        assert abs(est.mean()) < 5 * est.std() / math.sqrt(reps)
        assert abs(est.var() * m / float(variance[0]) - 1) < 0.1


def test_kd_gradient_is_the_derivative_of_the_loss():
    values, feats = RNG.normal(size=(5, 2)), RNG.normal(size=(5, 4))
    grad = ref.kd_gradient_at_zero(values, feats)
    h = 1e-6
    for a in range(2):
        for b in range(4):
            w = np.zeros((2, 4))
            w[a, b] = h
            fd = (ref.kd_loss(w, values, feats) - ref.kd_loss(-w, values, feats)) / (2 * h)
            assert abs(fd - grad[a, b]) < 1e-7 * (1 + abs(grad[a, b]))


def test_linear_dual_form_and_von_oswald_step():
    d, dk, dv = 4, 3, 2
    wq, wk, wv = RNG.normal(size=(dk, d)), RNG.normal(size=(dk, d)), RNG.normal(size=(dv, d))
    demos, context, queries = RNG.normal(size=(5, d)), RNG.normal(size=(2, d)), RNG.normal(size=(3, d))
    w0, dw = ref.linear_dual_weights(wk, wv, demos, context)
    np.testing.assert_allclose(ref.linear_attention(wq, wk, wv, np.concatenate([demos, context]), queries),
                               (queries @ wq.T) @ (w0 + dw).T, rtol=1e-12)
    # W_0 = -(N/2) grad L_D(0) with phi = identity
    np.testing.assert_allclose(-(5 / 2) * ref.kd_gradient_at_zero(demos @ wv.T, demos @ wk.T), w0, rtol=1e-13)
    xs, ys, xq, w_init = RNG.normal(size=(6, 3)), RNG.normal(size=(6, 2)), RNG.normal(size=(4, 3)), RNG.normal(size=(2, 3))
    out = ref.von_oswald_layer(xs, ys, xq, np.asarray(0.4), w_init)
    np.testing.assert_allclose(out[:, :3], xq, rtol=0, atol=0)
    # the step by hand: W_1 = W - eta (1/N) X^T-residual
    w1 = w_init - 0.4 / 6 * sum(np.outer(w_init @ x - y, x) for x, y in zip(xs, ys, strict=False))
    np.testing.assert_allclose(-out[:, 3:], xq @ w1.T, rtol=1e-12)
    np.testing.assert_allclose(ref.gd_step_prediction(xs, ys, xq, np.asarray(0.4), w_init), xq @ w1.T, rtol=1e-12)


def test_vector_norm_is_finite_wherever_the_norm_is():
    """np.linalg.norm squares the entries and overflows past 1.3e154; the scaled norm does not."""
    big = np.array([[3e165, 4e165], [0.0, 0.0], [3.0, -4.0]])
    assert np.array_equal(ref.vector_norm(big), [5e165, 0.0, 5.0])
    with np.errstate(over="ignore"):
        assert np.linalg.norm(big[0]) == np.inf  # what the checks computed before
    logs = ref.log_vector_norm(np.array([[1e308, 1e308], [0.0, 0.0]]))
    assert logs[0] == pytest.approx(math.log(1e308) + 0.5 * math.log(2.0), rel=1e-15) and logs[1] == -np.inf
    x = RNG.standard_normal((50, 7))
    assert np.allclose(ref.vector_norm(x), np.linalg.norm(x, axis=-1), rtol=8 * np.finfo(float).eps, atol=0)
    assert np.isnan(ref.vector_norm(np.array([np.nan, 1.0]))) and ref.vector_norm(np.array([np.inf, 1.0])) == np.inf
