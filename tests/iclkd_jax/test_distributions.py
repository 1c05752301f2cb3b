"""Token distributions: exact support bounds, determinism, refusing unbounded laws."""

import jax.numpy as jnp
import numpy as np
import pytest

from iclkd_jax import distributions as dist

BOUNDED = [dist.uniform_ball(3, radius=0.7, center=[1.0, 0.0, 0.0]), dist.sphere(3, radius=1.2),
           dist.truncated_gaussian(3, std=1.0, truncation=1.5),
           dist.mixture([dist.sphere(3), dist.uniform_ball(3, radius=2.0, center=[0.0, 1.0, 0.0])], [0.3, 0.7])]


@pytest.mark.parametrize("d", BOUNDED, ids=lambda d: d.kind)
def test_samples_respect_exact_bounds(key, d):
    x = np.asarray(d.sample(key, 500))
    assert x.shape == (500, 3)
    assert np.max(np.linalg.norm(x, axis=-1)) <= d.radius * (1 + 1e-12)
    wv, wk = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]]), np.array([[0.5, 0.0, 0.3]])
    assert np.max(np.linalg.norm(x @ wv.T, axis=-1)) <= d.value_bound(wv) * (1 + 1e-12)
    assert np.max(0.5 * np.sum((x @ wk.T) ** 2, -1)) <= d.log_feature_bound(wk) * (1 + 1e-12)
    np.testing.assert_array_equal(d.sample(key, 500), x)            # deterministic in (key, n)
    assert d.sample(key, 4, jnp.float32).dtype == jnp.float32


def test_sphere_radius_and_ball_uniformity(key):
    s = np.asarray(dist.sphere(4, radius=2.0).sample(key, 100))
    np.testing.assert_allclose(np.linalg.norm(s, axis=-1), 2.0, rtol=1e-13)
    b = np.asarray(dist.uniform_ball(3).sample(key, 4000))
    inner = np.mean(np.linalg.norm(b, axis=-1) <= 0.5 ** (1 / 3))   # half the volume: p = 1/2
    assert abs(inner - 0.5) <= 5 * np.sqrt(0.25 / 4000)


def test_unbounded_laws_refuse_bounds(key):
    for d in (dist.gaussian(3), dist.student_t(3), dist.mixture([dist.sphere(3), dist.gaussian(3)])):
        assert not d.bounded
        with pytest.raises(dist.UnboundedSupportError, match="unbounded"):
            d.value_bound(np.eye(3))
        assert d.sample(key, 5).shape == (5, 3)


def test_shift_family_and_bad_arguments(key):
    base = dist.uniform_ball(2)
    q = dist.shift_family(base, [3.0, 4.0], 2.0)
    np.testing.assert_allclose(np.asarray(q.sample(key, 50)) - np.asarray(base.sample(key, 50)), [[1.2, 1.6]] * 50, atol=1e-12)
    for call, name in ((lambda: dist.uniform_ball(2, radius=0.0), "radius"), (lambda: dist.sphere(0), "dim"),
                       (lambda: dist.mixture([dist.sphere(2), dist.sphere(3)]), "dimension"),
                       (lambda: dist.mixture([dist.sphere(2)], [0.5]), "weights"),
                       (lambda: dist.shift_family(base, [0.0, 0.0], 1.0), "direction")):
        with pytest.raises(ValueError, match=name):
            call()
