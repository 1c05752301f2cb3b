"""Explicit feature maps of exp(u.z): Taylor, positive (iid / orthogonal) and trigonometric random features."""

import functools
import math

import jax
import jax.numpy as jnp
import np_reference as ref
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import iclkd_jax as ik

DK = 4
U = jnp.array([[0.5, -0.3, 0.2, 0.35]])          # |u| ≈ 0.71
Z = jnp.array([[0.4, 0.45, -0.1, 0.3]])          # |z| ≈ 0.69
EXACT = float(np.exp(ref.f64(U) @ ref.f64(Z).T)[0, 0])

MAPS = {
    "positive": lambda k, m: ik.positive_random_features(k, m, key_dim=DK),
    "orthogonal": lambda k, m: ik.positive_random_features(k, m, key_dim=DK, orthogonal=True),
    "trig": lambda k, m: ik.trig_random_features(k, m, key_dim=DK),
}


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _estimates(kind, key, m, draws):
    return jax.vmap(lambda k: MAPS[kind](k, m).kernel(U, Z)[0, 0])(jax.random.split(key, draws))


def estimates(kind, key, m, draws):
    """The kernel estimate <phi(u), phi(z)> for `draws` independent keys (vmapped over keys, one compile)."""
    return np.asarray(_estimates(kind, key, m, draws))


@given(order=st.sampled_from([0, 1, 3, 5]), seed=st.integers(0, 2**31 - 1))
def test_taylor_kernel_is_truncated_exponential_series(order, seed):
    u, z = jax.random.normal(jax.random.key(seed), (2, 3, DK))
    fm = ik.taylor_features(order, key_dim=DK)
    assert fm.num_features == sum(DK**n for n in range(order + 1)) == fm(u).shape[1]
    want = ref.taylor_kernel(u, z, order)
    # an inner product of m features, each a product of <= p factors and square roots: worst-case
    # error (m + 2p) eps times the same sum with absolute values, which is the Taylor kernel of |u|, |z|
    scale = ref.taylor_kernel(jnp.abs(u), jnp.abs(z), order)
    tol = (fm.num_features + 2 * order + 1) * 2.2e-16 * scale
    assert np.all(np.abs(ref.f64(fm.kernel(u, z)) - want) <= tol)
    np.testing.assert_allclose(fm(u), ref.taylor_features(u, order), rtol=1e-13, atol=1e-15)
    # and it approaches exp(u.z) within the Taylor remainder
    s = ref.f64(u) @ ref.f64(z).T
    assert np.all(np.abs(want - np.exp(s)) <= ref.taylor_remainder(s, order) * (1 + 1e-12) + 1e-15)


@pytest.mark.parametrize("kind", MAPS)
def test_random_features_are_unbiased(key, kind):
    """Mean of <phi(u), phi(z)> over 4000 independent keys is exp(u.z) within 5 standard errors."""
    est = estimates(kind, key, 8, 4000)
    se = est.std(ddof=1) / math.sqrt(est.size)
    assert abs(est.mean() - EXACT) <= 5 * se, (est.mean(), EXACT, se)
    assert se < 0.05 * EXACT       # the test has power: 5 SE is a small fraction of the value


def error_slope(kind, key, ms, draws):
    rms = np.array([np.sqrt(np.mean((estimates(kind, jax.random.fold_in(key, m), int(m), draws) - EXACT) ** 2)) / EXACT
                    for m in ms])
    return np.polyfit(np.log(ms), np.log(rms), 1)[0]


@pytest.mark.slow  # the default run checks the rate through the lemma-features check (tests/verification)
@pytest.mark.parametrize("kind", MAPS)
def test_random_feature_error_falls_like_inverse_sqrt_m(key, kind):
    # default run: two sizes, 100 draws each (the log-RMS has sd <~ 0.1, the slope sd <~ 0.05)
    slope = error_slope(kind, key, np.array([16, 256]), 100)
    if kind == "orthogonal":
        assert -0.8 <= slope <= -0.35, slope
    else:
        assert -0.65 <= slope <= -0.35, slope


@pytest.mark.slow
@pytest.mark.parametrize("kind", MAPS)
def test_random_feature_error_rate_sweep(key, kind):
    ms = np.array([16, 64, 256, 1024, 4096])
    slope = error_slope(kind, key, ms, 400)
    # iid/trig: exactly -1/2 in expectation; with 400 draws the log-RMS has sd ~ 0.05-0.1, over a
    # log-range of 5.5 the fitted slope has sd < 0.05. Orthogonal rows may only do better.
    if kind == "orthogonal":
        assert -0.75 <= slope <= -0.4, slope
    else:
        assert -0.65 <= slope <= -0.35, slope


def test_orthogonal_rows_within_blocks(key):
    m = 10                                           # 3 blocks of d_k = 4, the last one partial
    omega = ref.f64(ik.positive_random_features(key, m, key_dim=DK, orthogonal=True).omega)
    for start in range(0, m, DK):
        block = omega[start:start + DK]
        gram = block @ block.T
        off = gram - np.diag(np.diag(gram))
        assert np.max(np.abs(off)) <= 1e-12 * np.max(np.diag(gram))
    assert np.linalg.matrix_rank(omega[:DK]) == DK


def test_orthogonal_rows_are_marginally_standard_gaussian(key):
    """Regression: the raw QR factor has sign-biased columns (its first entry is always negative),
    which biased the orthogonal estimator. Each row must be N(0, I): mean 0, covariance I."""
    draw = jax.jit(jax.vmap(lambda k: ik.positive_random_features(k, DK, key_dim=DK, orthogonal=True).omega))
    omega = np.asarray(draw(jax.random.split(key, 2000)))   # (2000, d_k, d_k)
    mean = omega.mean(0)
    assert np.max(np.abs(mean)) <= 5 / math.sqrt(2000), mean       # each entry has variance 1
    for r in range(DK):
        cov = np.cov(omega[:, r, :].T)
        assert np.max(np.abs(cov - np.eye(DK))) <= 0.2, cov        # sd of a sample covariance entry ~ sqrt(2/2000)


def test_same_key_same_features_and_determinism(key):
    for kind, make in MAPS.items():
        a, b = make(key, 32), make(key, 32)
        np.testing.assert_array_equal(a(U), b(U))
        assert not np.allclose(a(U), make(jax.random.fold_in(key, 1), 32)(U)), kind


def test_positive_features_finite_for_large_keys(key):
    """|u| = 30: exp(|u|^2/2) overflows float32, the combined exponent does not (features ≈ exp(Ωu - |u|²/2))."""
    fm = ik.positive_random_features(key, 16, key_dim=DK, dtype=jnp.float32)
    row = np.asarray(fm.omega[0], np.float64)
    u = jnp.asarray(np.stack([14.0 * row / np.linalg.norm(row), -14.0 * row / np.linalg.norm(row)]), jnp.float32)
    feats = fm(u)          # |u|^2/2 = 98 > 88.7: exp(|u|^2/2) alone would be inf in float32
    assert feats.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(feats)))
    expo = ref.f64(u) @ ref.f64(fm.omega).T - 0.5 * np.sum(ref.f64(u) ** 2, -1, keepdims=True) - 0.5 * np.log(16)
    normal = expo > -87          # where the exact feature is a normal float32
    assert normal[0, 0]
    # the exponent (|x| <= ~300) is formed in float32 with error <~ 8 eps32 |x|; exp turns it into a relative error
    rtol = 8 * 1.2e-7 * np.max(np.abs(expo[normal]))
    np.testing.assert_allclose(ref.f64(feats)[normal], np.exp(expo[normal]), rtol=rtol)


def test_float32_dtype_preserved(key):
    u32 = U.astype(jnp.float32)
    for fm in (ik.taylor_features(3, key_dim=DK), ik.identity_features(key_dim=DK),
               ik.positive_random_features(key, 8, key_dim=DK),              # float64 draw, float32 input
               ik.trig_random_features(key, 8, key_dim=DK, dtype=jnp.float32),
               ik.positive_random_features(key, 8, key_dim=DK, orthogonal=True, dtype=jnp.float32)):
        assert fm(u32).dtype == jnp.float32, fm


def test_feature_maps_under_jit(key):
    fm = ik.trig_random_features(key, 8, key_dim=DK)
    np.testing.assert_allclose(jax.jit(lambda f, u: f(u))(fm, U), fm(U), rtol=1e-14)
    made = jax.jit(lambda k: ik.positive_random_features(k, 8, key_dim=DK, orthogonal=True).kernel(U, Z))(key)
    np.testing.assert_allclose(made, ik.positive_random_features(key, 8, key_dim=DK, orthogonal=True).kernel(U, Z),
                               rtol=1e-12)


@pytest.mark.parametrize("call,name", [
    (lambda: ik.positive_random_features(0, 8, key_dim=DK), "key"),
    (lambda: ik.trig_random_features(jax.random.key(0), 0, key_dim=DK), "num_features"),
    (lambda: ik.positive_random_features(jax.random.key(0), 8, key_dim=0), "key_dim"),
    (lambda: ik.taylor_features(-1, key_dim=DK), "order"),
    (lambda: ik.taylor_features(2.5, key_dim=DK), "order"),
    (lambda: ik.taylor_features(20, key_dim=DK), "1e7"),
    (lambda: ik.taylor_features(2, key_dim=DK)(jnp.ones((3, DK + 1))), "u"),
    (lambda: ik.identity_features(key_dim=DK)(jnp.array([[jnp.nan] * DK])), "u"),
])
def test_bad_inputs(call, name):
    with pytest.raises(ValueError, match=name):
        call()
