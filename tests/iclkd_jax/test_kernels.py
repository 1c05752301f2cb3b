"""Kernels against scikit-learn and NumPy; squared distances without cancellation in float32."""

import jax
import jax.numpy as jnp
import np_reference as ref
import numpy as np
import pytest
from scipy.spatial.distance import pdist
from sklearn.metrics import pairwise

import iclkd_jax as ik

EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture
def xy(key):
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (6, 3)), 0.5 + jax.random.normal(ky, (5, 3))


def test_against_scikit_learn(xy):
    x, y = (np.asarray(a) for a in xy)
    bw = 0.8
    np.testing.assert_allclose(ik.rbf_kernel(bandwidth=bw)(*xy), pairwise.rbf_kernel(x, y, gamma=1 / (2 * bw**2)), rtol=1e-12)
    np.testing.assert_allclose(ik.linear_kernel()(*xy), pairwise.pairwise_kernels(x, y, metric="linear"), rtol=1e-12)
    # our Laplace kernel uses the Euclidean norm; sklearn's laplacian_kernel is L1 (exp(-gamma |x-y|_1)).
    np.testing.assert_allclose(ik.laplace_kernel(bandwidth=bw)(*xy),
                               np.exp(-pairwise.euclidean_distances(x, y) / bw), rtol=1e-12)
    assert not np.allclose(ik.laplace_kernel(bandwidth=bw)(*xy), pairwise.laplacian_kernel(x, y, gamma=1 / bw))
    np.testing.assert_allclose(ik.laplace_kernel(bandwidth=bw)(x[:, :1], y[:, :1]),      # in 1-D they coincide
                               pairwise.laplacian_kernel(x[:, :1], y[:, :1], gamma=1 / bw), rtol=1e-12)


def test_exponential_kernels_and_log_gram(xy):
    x, y = xy
    wk = jax.random.normal(jax.random.key(3), (2, 3))
    for kernel, want in ((ik.exp_kernel(), ref.gram("exp", x, y)), (ik.product_kernel(wk), ref.gram("product", x, y, wk=wk))):
        np.testing.assert_allclose(kernel(x, y), want, rtol=1e-13)
        sign, log_abs = kernel.log_gram(x, y)
        np.testing.assert_allclose(sign * np.exp(log_abs), want, rtol=1e-13)
        assert kernel.exponential
    sign, log_abs = ik.exp_kernel().log_gram(30 * x, 30 * y)     # exp would overflow float64, log_gram does not
    assert np.all(np.isfinite(np.asarray(log_abs))) and np.max(np.asarray(log_abs)) > 709


@pytest.mark.parametrize("path", ["direct", "centred-expansion"])
def test_squared_distances_far_from_origin_float32(key, path, monkeypatch):
    """Offset 1e3, spread 1e-2, float32: the naive expansion loses everything; ours stays accurate (both code paths)."""
    if path == "centred-expansion":
        monkeypatch.setattr("iclkd_jax.kernels._DIRECT_MAX", 0)
    kx, ky = jax.random.split(key)
    x = (1e3 + 1e-2 * jax.random.normal(kx, (8, 3))).astype(jnp.float32)
    y = (1e3 + 1e-2 * jax.random.normal(ky, (7, 3))).astype(jnp.float32)
    got = ik.squared_distances(x, y)
    want = ref.sq_dist(x, y)                     # exact differences of the same float32 points
    assert got.dtype == jnp.float32
    # after centring, entries are O(spread): the expansion's error is <= (d + 2) eps32 (|xc|^2 + |yc|^2)
    centre = ref.f64(y).mean(0)
    norms = np.sum((ref.f64(x) - centre) ** 2, -1)[:, None] + np.sum((ref.f64(y) - centre) ** 2, -1)[None, :]
    bound = 4 * (3 + 2) * EPS32 * norms
    assert np.all(np.abs(ref.f64(got) - want) <= bound)
    assert np.max(np.abs(ref.f64(got) - want) / want) < 1e-4
    naive = np.sum(np.asarray(x) ** 2, -1)[:, None] + np.sum(np.asarray(y) ** 2, -1)[None] - 2 * np.asarray(x) @ np.asarray(y).T
    assert np.max(np.abs(naive - want) / want) > 1.0          # the hazard is real in float32
    rbf = ik.rbf_kernel(bandwidth=1e-2)(x, y)
    np.testing.assert_allclose(rbf, np.exp(-want / 2e-4), rtol=1e-4 * np.max(want) / 2e-4 + 1e-6)


def test_float32_preserved_even_with_float64_parameters(xy):
    x, y = (a.astype(jnp.float32) for a in xy)
    for kernel in (ik.rbf_kernel(bandwidth=np.float64(0.7)), ik.laplace_kernel(bandwidth=jnp.asarray(0.7, jnp.float64)),
                   ik.linear_kernel(), ik.exp_kernel(), ik.product_kernel(jnp.ones((2, 3)))):
        assert kernel(x, y).dtype == jnp.float32, kernel
        assert kernel.log_gram(x, y)[1].dtype == jnp.float32, kernel


def test_laplace_diagonal_is_exactly_one_in_float32(key):
    """Regression: the expansion left ~eps|x|^2 on the diagonal, which sqrt made ~3e-4 in the Laplace kernel."""
    x = (3.0 + jax.random.normal(key, (20, 3))).astype(jnp.float32)
    np.testing.assert_array_equal(np.diag(np.asarray(ik.laplace_kernel(bandwidth=0.5)(x, x))), 1.0)


def test_median_bandwidth(xy):
    x, y = xy
    pooled = np.concatenate([np.asarray(x), np.asarray(y)])
    assert ik.median_bandwidth(x, y) == pytest.approx(np.median(pdist(pooled)), rel=1e-14)
    assert ik.median_bandwidth(x) == pytest.approx(np.median(pdist(np.asarray(x))), rel=1e-14)


@pytest.mark.parametrize("call,name", [
    (lambda: ik.rbf_kernel(bandwidth=0.0), "bandwidth"),
    (lambda: ik.rbf_kernel(bandwidth=-1.0), "bandwidth"),
    (lambda: ik.laplace_kernel(bandwidth=np.nan), "bandwidth"),
    (lambda: ik.laplace_kernel(bandwidth=np.inf), "bandwidth"),
    (lambda: ik.rbf_kernel(bandwidth=[1.0, 2.0]), "bandwidth"),
    (lambda: ik.product_kernel(jnp.ones(3)), "wk"),
    (lambda: ik.product_kernel(jnp.array([[jnp.nan, 1.0]])), "wk"),
    (lambda: ik.median_bandwidth(jnp.ones((1, 3))), "2 points"),
    (lambda: ik.median_bandwidth(jnp.ones((4, 3)), jnp.ones((4, 2))), "y"),
])
def test_bad_inputs(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_kernels_are_pytrees_under_jit(xy):
    f = jax.jit(lambda k, x, y: k(x, y))
    for bw in (0.5, 1.5):
        np.testing.assert_allclose(f(ik.rbf_kernel(bandwidth=bw), *xy), ik.rbf_kernel(bandwidth=bw)(*xy), rtol=1e-14)


def test_large_tiles_use_the_matmul_form_not_explicit_differences():
    """Explicit differences cost O(n m d) memory and time (a 10x slowdown at block_size=256, d=64 was
    measured); above the small-size threshold the distances must come from one matmul: no
    intermediate larger than the n x m result."""
    x = jnp.zeros((256, 8))
    jaxpr = jax.make_jaxpr(ik.squared_distances)(x, x)
    biggest = max(int(np.prod(v.aval.shape)) for eqn in jaxpr.jaxpr.eqns for v in eqn.outvars)
    assert biggest <= 256 * 256, biggest


def test_laplace_keeps_exact_differences_where_rbf_uses_the_matmul(key):
    """n m d = 320k: above the default direct limit (2^18), below Laplace's (2^22). The Laplace diagonal is
    exactly 1 (a sqrt would amplify the expansion's residue to ~sqrt(eps)); RBF takes the matmul form."""
    x = 1e2 + jax.random.normal(key, (100, 32))
    np.testing.assert_array_equal(np.diag(np.asarray(ik.laplace_kernel(bandwidth=1.0)(x, x))), 1.0)
    jaxpr = jax.make_jaxpr(lambda a: ik.rbf_kernel(bandwidth=1.0)(a, a))(x)
    assert max(int(np.prod(v.aval.shape)) for eqn in jaxpr.jaxpr.eqns for v in eqn.outvars) <= 100 * 100
