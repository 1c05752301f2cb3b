"""Synthetic distributions: exact norm bounds, shift families, refusal of unbounded laws (THEOREMS.md 3.2, 4.1)."""

import jax
import numpy as np
import pytest

import iclkd_jax as ik
from iclkd_jax import distributions as D

BOUNDED = [
    D.uniform_ball(3, radius=1.5, center=[1.0, 0.0, -0.5]),
    D.sphere(3, radius=0.7, center=[0.0, 2.0, 0.0]),
    D.truncated_gaussian(3, std=1.0, truncation=1.2, center=[0.3, 0.3, 0.3]),
    D.mixture([D.uniform_ball(3, radius=0.5, center=[2.0, 0.0, 0.0]), D.sphere(3, radius=1.0)], [0.25, 0.75]),
]
IDS = ["ball", "sphere", "truncgauss", "mixture"]


@pytest.mark.parametrize("dist", BOUNDED, ids=IDS)
def test_samples_never_exceed_the_exact_radius_and_bounds_hold(dist, key):
    x = np.asarray(dist.sample(key, 256))
    assert x.shape == (256, 3)
    norms = np.linalg.norm(x, axis=1)
    assert norms.max() <= dist.radius * (1 + 1e-12)
    w = ik.random_attention_weights(jax.random.key(1), token_dim=3, key_dim=2, value_dim=2, scale=1.5)
    wk, wv = np.asarray(w.wk), np.asarray(w.wv)
    assert np.linalg.norm(x @ wv.T, axis=1).max() <= dist.value_bound(wv) * (1 + 1e-12)          # T
    log_phi = 0.5 * np.sum((x @ wk.T) ** 2, axis=1)                                                # log ||phi||
    assert log_phi.max() <= dist.log_feature_bound(wk) + 1e-12                                      # log C
    assert np.isclose(dist.feature_bound(wk), np.exp(dist.log_feature_bound(wk)))


def test_radius_is_attained_by_the_sphere_and_approached_by_the_ball(key):
    sphere = D.sphere(2, radius=1.0, center=[3.0, 4.0])
    x = np.asarray(sphere.sample(key, 2000))
    assert np.allclose(np.linalg.norm(x - [3.0, 4.0], axis=1), 1.0)
    assert sphere.radius == 6.0 and np.linalg.norm(x, axis=1).max() > 5.99
    ball = D.uniform_ball(2, radius=1.0)
    assert np.linalg.norm(np.asarray(ball.sample(key, 2000)), axis=1).max() > 0.98


def test_sampling_is_deterministic_in_the_key_and_keeps_dtype(key):
    ball = D.uniform_ball(4)
    assert np.array_equal(np.asarray(ball.sample(key, 8)), np.asarray(ball.sample(key, 8)))
    assert not np.array_equal(np.asarray(ball.sample(key, 8)), np.asarray(ball.sample(jax.random.key(9), 8)))
    assert ball.sample(key, 8, dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize("dist", [D.gaussian(3), D.student_t(3, df=3.0)], ids=["gaussian", "student_t"])
def test_unbounded_families_refuse_with_the_reason(dist, key):
    assert not dist.bounded
    assert dist.sample(key, 4).shape == (4, 3)
    for ask in (lambda: dist.radius, lambda: dist.value_bound(np.eye(3)), lambda: dist.feature_bound(np.eye(3))):
        with pytest.raises(D.UnboundedSupportError, match="unbounded.*∞"):
            ask()
    with pytest.raises(D.UnboundedSupportError):
        D.mixture([D.uniform_ball(3), dist]).radius


def test_shift_family_is_the_coupled_translation(key):
    base = D.truncated_gaussian(3, std=0.5, truncation=1.0)
    q = D.shift_family(base, [0.0, 3.0, 4.0], 2.0)
    assert np.allclose(q.mean, [0.0, 1.2, 1.6]) and np.isclose(q.radius, 3.0)
    assert np.allclose(np.asarray(q.sample(key, 16)) - np.asarray(base.sample(key, 16)), [0.0, 1.2, 1.6])
    with pytest.raises(ValueError, match="direction"):
        D.shift_family(base, [0.0, 0.0, 0.0], 1.0)


@pytest.mark.parametrize("base", BOUNDED, ids=IDS)
def test_scale_family_keeps_the_mean_and_scales_the_spread(base, key):
    q = D.scale_family(base, 0.5)
    assert np.allclose(q.mean, base.mean)
    x, y = np.asarray(base.sample(key, 64)), np.asarray(q.sample(key, 64))
    if base.kind != "mixture":  # coupled draws: y = mean + 1.5 (x - mean)
        assert np.allclose(y, base.mean + 1.5 * (x - base.mean))
    assert np.linalg.norm(y, axis=1).max() <= q.radius * (1 + 1e-12)
    assert D.scale_family(base, 0.0).radius == pytest.approx(base.radius)
    with pytest.raises(ValueError, match="t must be"):
        D.scale_family(base, -1.0)


def test_scale_family_has_zero_linear_mmd_and_moves_the_weights(key):
    """Equal means: MMD_lin(P, Q_t) = ||mean_P - mean_Q|| = 0 in population; ΔW != 0 (conj-4.1)."""
    base = D.sphere(2, radius=1.0)
    x = base.sample(key, 4000)
    y = D.scale_family(base, 1.0).sample(jax.random.key(5), 4000)
    w = ik.random_attention_weights(jax.random.key(2), token_dim=2, key_dim=2, value_dim=2)
    # sample means are O(n^-1/2) away from the common mean 0
    assert float(ik.mmd2(x, y, ik.linear_kernel())) < 5e-3
    assert float(ik.hs_norm(ik.distilled_weight_difference(w, x, y, eta=0.5)).value) > 1e-2


def test_mixture_weight_family_interpolates_the_weights():
    comps = [D.uniform_ball(2, center=[-2.0, 0.0]), D.uniform_ball(2, center=[2.0, 0.0])]
    q = D.mixture_weight_family(comps, [1.0, 0.0], [0.0, 1.0], 0.25)
    assert q.weights == (0.75, 0.25) and np.allclose(q.mean, [-1.0, 0.0]) and q.radius == 3.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        D.mixture_weight_family(comps, [1.0, 0.0], [0.0, 1.0], 1.5)


def test_invalid_arguments_name_themselves():
    with pytest.raises(ValueError, match="center"):
        D.uniform_ball(3, center=[0.0, 1.0])
    with pytest.raises(ValueError, match="radius"):
        D.sphere(2, radius=-1.0)
    with pytest.raises(ValueError, match="weights"):
        D.mixture([D.uniform_ball(2), D.sphere(2)], [0.5, 0.6])
    with pytest.raises(ValueError, match="n must be"):
        D.uniform_ball(2).sample(jax.random.key(0), 0)
    with pytest.raises(ValueError, match="factor"):
        D.uniform_ball(2).scaled(0.0)


def test_distilled_weight_difference_matches_the_two_distilled_steps(key):
    """ΔW = W̄(Q) - W̄(D) (Theorem 4.1), as one operator, against Theorem 3.1(b)'s two steps."""
    w = ik.random_attention_weights(key, token_dim=3, key_dim=2, value_dim=2, scale=2.0)
    x = D.uniform_ball(3).sample(jax.random.key(1), 5)
    y = D.uniform_ball(3, center=[1.0, 0.0, 0.0]).sample(jax.random.key(2), 4)
    z = D.sphere(3).sample(jax.random.key(3), 3)
    dw = ik.distilled_weight_difference(w, x, y, eta=0.7)
    expected = ik.student(ik.distilled_weights(w, y, eta=0.7), w, z) - ik.student(ik.distilled_weights(w, x, eta=0.7), w, z)
    np.testing.assert_allclose(np.asarray(ik.student(dw, w, z)), np.asarray(expected), rtol=1e-12, atol=1e-12)
    # kd_risk on the zero step is the teacher's mean square
    zero = ik.distilled_weight_difference(w, x, x, eta=0.7)
    assert float(ik.kd_risk(zero, w, z)) == pytest.approx(float(np.mean(np.sum(np.asarray(ik.teacher(w, z)) ** 2, 1))))
    with pytest.raises(ValueError, match="prompt"):
        ik.distilled_weight_difference(w, x, np.ones((2, 4)), eta=0.7)
    with pytest.raises(ValueError, match="eta"):
        ik.distilled_weight_difference(w, x, y)
