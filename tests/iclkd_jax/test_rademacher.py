"""Rademacher estimators (docs/statements.md#thm-3-2, Theorem 3.2): Monte Carlo vs enumeration vs the closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iclkd_jax as ik


def _gram(seed=0, n=8, m=3):
    phi = np.random.default_rng(seed).normal(size=(n, m))
    return phi @ phi.T, phi


def test_monte_carlo_matches_enumeration_and_is_below_closed_form():
    gram, phi = _gram()
    exact = ik.rademacher_exact(gram, 2.0)
    est = ik.rademacher_complexity(jax.random.key(0), jnp.asarray(gram), 2.0, num_signs=20_000)
    assert abs(float(est.estimate) - exact) <= 4 * float(est.standard_error)
    closed = float(ik.rademacher_closed_form(jnp.asarray(gram), 2.0))
    np.testing.assert_allclose(closed, 2.0 / 8 * np.sqrt(np.sum(phi**2)), rtol=1e-14)
    np.testing.assert_allclose(float(est.closed_form), closed, rtol=1e-14)
    assert exact <= closed  # Jensen
    # E sigma^T K sigma = tr K exactly
    assert abs(float(est.mean_square) - np.trace(gram)) <= 5 * float(est.mean_square_se)
    # closed form <= B C / sqrt(N) with C = max ||phi_i||
    c = np.sqrt(np.max(np.sum(phi**2, axis=1)))
    assert closed <= 2.0 * c / np.sqrt(8) * (1 + 1e-14)


def test_exact_kernel_gram():
    keys = np.random.default_rng(1).uniform(-0.5, 0.5, size=(6, 2))
    gram = np.exp(keys @ keys.T)
    exact = ik.rademacher_exact(gram, 1.0)
    assert exact <= float(ik.rademacher_closed_form(jnp.asarray(gram), 1.0))


def test_one_point_is_exact():
    # N = 1: |sigma| phi = phi always, so R_1 = B ||phi|| = closed form
    gram = jnp.asarray([[4.0]])
    assert ik.rademacher_exact(gram, 1.5) == pytest.approx(1.5 * 2.0)
    est = ik.rademacher_complexity(jax.random.key(1), gram, 1.5, num_signs=16)
    assert float(est.estimate) == pytest.approx(3.0) and float(est.standard_error) == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="square"):
        ik.rademacher_closed_form(jnp.ones((2, 3)), 1.0)
    with pytest.raises(ValueError, match="radius"):
        ik.rademacher_complexity(jax.random.key(0), jnp.eye(2), -1.0)
    with pytest.raises(ValueError, match="num_signs"):
        ik.rademacher_complexity(jax.random.key(0), jnp.eye(2), 1.0, num_signs=1)
    with pytest.raises(ValueError, match="20"):
        ik.rademacher_exact(np.eye(21), 1.0)
