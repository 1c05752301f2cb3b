"""max_quadratic_on_ball: the exact trust-region maximum (docs/statements.md#thm-3-2, Theorem 3.2) against brute force."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

import iclkd_jax as ik


def _f(a, b, w):
    return w @ a @ w - 2 * b @ w


def _sphere_and_ball_grid(dim, radius, rng, n=60_000):
    """Dense points on the sphere (where a non-interior maximum lies) and inside the ball."""
    if dim == 2:
        theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
        sphere = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    else:
        g = rng.normal(size=(n, dim))
        sphere = g / np.linalg.norm(g, axis=1, keepdims=True)
    inner = sphere * rng.uniform(size=(n, 1)) ** (1 / dim)
    return radius * np.concatenate([sphere, inner])


def _scipy_max(a, b, radius, rng, restarts=30):
    best = -np.inf
    cons = {"type": "ineq", "fun": lambda w: radius**2 - w @ w, "jac": lambda w: -2 * w}
    for _ in range(restarts):
        w0 = rng.normal(size=b.shape)
        w0 *= radius * rng.uniform() / np.linalg.norm(w0)
        res = optimize.minimize(lambda w: -_f(a, b, w), w0, jac=lambda w: -(2 * a @ w - 2 * b),
                                constraints=[cons], method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
        if res.success and res.x @ res.x <= radius**2 * (1 + 1e-9):
            best = max(best, -res.fun)
    return best


def _assert_solution(a, b, radius, value, w, rtol):
    value, w = float(value), np.asarray(w, np.float64)
    scale = np.abs(a).max() * radius**2 + np.abs(b).max() * radius + 1e-300
    assert np.linalg.norm(w) <= radius * (1 + rtol)
    assert abs(_f(a, b, w) - value) <= rtol * scale  # value is attained at the returned point


@pytest.mark.parametrize("dim", [2, 3])
def test_matches_dense_grid_and_scipy(dim):
    rng = np.random.default_rng(dim)
    for _ in range(6):
        a = rng.normal(size=(dim, dim))
        a = a + a.T
        b = rng.normal(size=dim)
        radius = rng.uniform(0.3, 3.0)
        value, w = ik.max_quadratic_on_ball(jnp.asarray(a), jnp.asarray(b), radius)
        _assert_solution(a, b, radius, value, w, 1e-12)
        grid = _sphere_and_ball_grid(dim, radius, rng)
        brute = np.max(np.einsum("ni,ij,nj->n", grid, a, grid) - 2 * grid @ b)
        scipy_best = _scipy_max(a, b, radius, rng)
        scale = np.abs(a).max() * radius**2 + np.abs(b).max() * radius
        assert float(value) >= scipy_best - 1e-9 * scale  # no local optimiser beats it
        assert float(value) >= brute - 1e-12 * scale  # nor any grid point
        assert float(value) - brute <= 1e-3 * scale  # and the grid comes close to it


def test_interior_maximum_negative_definite():
    a = np.diag([-2.0, -1.0])
    b = np.array([0.1, 0.1])
    value, w = ik.max_quadratic_on_ball(jnp.asarray(a), jnp.asarray(b), 2.0)
    np.testing.assert_allclose(np.asarray(w), np.linalg.solve(a, b), rtol=1e-14)
    np.testing.assert_allclose(float(value), -b @ np.linalg.solve(a, b), rtol=1e-14)


@pytest.mark.parametrize("top_multiplicity", [1, 2])
def test_hard_case(top_multiplicity):
    """b orthogonal to the top eigenspace and ||w(lambda_max)|| < R: a top-eigenvector component is added."""
    rng = np.random.default_rng(7)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    lam = np.array([2.0] * top_multiplicity + [1.0, -1.0, 0.5][: 4 - top_multiplicity])
    a = q @ np.diag(lam) @ q.T
    a = 0.5 * (a + a.T)
    beta = np.zeros(4)
    beta[top_multiplicity:] = [0.3, 0.2, 0.1][: 4 - top_multiplicity]
    b = q @ beta
    radius = 2.0
    value, w = ik.max_quadratic_on_ball(jnp.asarray(a), jnp.asarray(b), radius)
    # exact: mu = 2, w = (a - 2I)^+ b + tau v, value = 2 R^2 + sum beta_i^2 / (2 - lam_i)
    rest = slice(top_multiplicity, 4)
    expected = 2.0 * radius**2 + np.sum(beta[rest] ** 2 / (2.0 - lam[rest]))
    np.testing.assert_allclose(float(value), expected, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(w)), radius, rtol=1e-12)
    sol = ik.max_quadratic_in_eigenbasis(jnp.asarray(lam), jnp.asarray(beta), radius)
    assert bool(sol.hard_case) and float(sol.multiplier) == pytest.approx(2.0)
    # a tiny perturbation off the hard case gives (continuously) the same maximum
    value2, _ = ik.max_quadratic_on_ball(jnp.asarray(a), jnp.asarray(b + 1e-9 * q[:, 0]), radius)
    np.testing.assert_allclose(float(value2), expected, rtol=1e-8)


def test_degenerate_eigenvalues_and_zero_b():
    a = jnp.eye(3) * 1.5
    value, w = ik.max_quadratic_on_ball(a, jnp.zeros(3), 2.0)
    assert float(value) == pytest.approx(1.5 * 4.0)
    assert float(jnp.linalg.norm(w)) == pytest.approx(2.0)
    value, w = ik.max_quadratic_on_ball(-a, jnp.zeros(3), 2.0)
    assert float(value) == 0.0 and float(jnp.abs(w).max()) == 0.0


def test_float32_keeps_dtype_and_is_accurate():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(3, 3))
    a = a + a.T
    b = rng.normal(size=3)
    value64, _ = ik.max_quadratic_on_ball(jnp.asarray(a), jnp.asarray(b), 1.5)
    value32, w32 = ik.max_quadratic_on_ball(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), 1.5)
    assert value32.dtype == jnp.float32 and w32.dtype == jnp.float32
    scale = np.abs(a).max() * 1.5**2 + np.abs(b).max() * 1.5
    assert abs(float(value32) - float(value64)) <= 1e-5 * scale


def test_jit_and_vmap():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(5, 3, 3))
    a = jnp.asarray(a + np.swapaxes(a, 1, 2))
    b = jnp.asarray(rng.normal(size=(5, 3)))
    batched = jax.jit(jax.vmap(ik.max_quadratic_on_ball, in_axes=(0, 0, None)))(a, b, 1.0)
    for i in range(5):
        single = ik.max_quadratic_on_ball(a[i], b[i], 1.0)
        np.testing.assert_allclose(float(batched.value[i]), float(single.value), rtol=1e-12)


@pytest.mark.parametrize("args,match", [
    ((np.ones((2, 3)), np.ones(2), 1.0), "square"),
    ((np.array([[1.0, 2.0], [0.0, 1.0]]), np.ones(2), 1.0), "symmetric"),
    ((np.eye(2), np.ones(3), 1.0), "b must have shape"),
    ((np.eye(2), np.ones(2), 0.0), "radius"),
    ((np.eye(2), np.ones(2), -1.0), "radius"),
    ((np.eye(2), np.array([np.nan, 1.0]), 1.0), "non-finite"),
    ((np.eye(2, dtype=np.float32), np.ones(2), 1.0), "dtype"),
])
def test_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        ik.max_quadratic_on_ball(*args)


def test_eigenbasis_shape_mismatch():
    with pytest.raises(ValueError, match="one shape"):
        ik.max_quadratic_in_eigenbasis(jnp.ones(3), jnp.ones(2), 1.0)
