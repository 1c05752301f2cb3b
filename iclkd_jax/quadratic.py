"""Exact maximum of a quadratic over a Euclidean ball (docs/statements.md#thm-3-2, Theorem 3.2: the trust-region subproblem).

Problem: for symmetric ``a (n, n)`` (indefinite allowed), ``b (n,)`` and ``R > 0``,

    max_{||w|| <= R} f(w),   f(w) = w^T a w - 2 b^T w.

Optimality (the trust-region conditions, Moré & Sorensen 1983, written for a maximum):
``w*`` is a global maximiser iff there is ``mu >= 0`` with

    (a - mu I) w* = b,   a - mu I ⪯ 0  (mu >= lambda_max),   mu (R - ||w*||) = 0.

With ``a = Q diag(lambda) Q^T`` and ``beta = Q^T b``, and ``mu = lambda_max + t``, ``t >= 0``:
``w_i(t) = -beta_i / (t + delta_i)`` with the eigen-gaps ``delta_i = lambda_max - lambda_i >= 0``
(written with the gaps, not ``mu - lambda_i``, so no cancellation occurs near the top eigenvalue).

Three cases:

* **interior** (``lambda_max < 0`` and ``||a^{-1} b|| <= R``): ``mu = 0``, ``w = a^{-1} b``;
* **boundary**: ``||w(t)||`` decreases strictly on ``t > t_low = max(0, -lambda_max)``, and the
  secular equation ``1/||w(t)|| = 1/R`` has one root, found by Newton's method on
  ``h(t) = 1/||w(t)||`` (nearly linear: each term of ``||w||^2`` is ``beta_i^2 / (t + delta_i)^2``),
  safeguarded by bisection inside a bracket that is valid from the start
  (``t >= |beta_i| / R - delta_i`` for every ``i``, and ``t <= ||b|| / R``), in a fixed number
  of iterations (a ``lax.fori_loop``, so it runs under ``jit`` and ``vmap``);
* **hard case** (``b`` orthogonal to the top eigenspace, ``lambda_max >= 0`` and
  ``||w(0)|| < R`` on the other eigenvectors): ``mu = lambda_max``, and a top-eigenvector
  component of length ``sqrt(R^2 - ||w(0)||^2)`` is added to reach the sphere.

Eigenvalues within ``4 n eps max|lambda|`` of ``lambda_max`` count as the top eigenspace
(a backward error of the eigendecomposition), and a projection of ``b`` on it below
``4 n eps ||b||`` counts as zero; both are within the round-off of the inputs.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from iclkd_jax import _validation as V
from iclkd_jax._compile import counted_jit

#: Newton/bisection iterations of the secular equation (Newton converges in < 10 from the valid
#: lower bound on every case of the tests; the rest is margin for the bisection safeguard).
NEWTON_ITERATIONS = 64


class BallMaximum(NamedTuple):
    """``(value, maximiser)`` of ``max_{||w|| <= R} w^T a w - 2 b^T w``."""

    value: jax.Array
    maximiser: jax.Array


class EigenbasisMaximum(NamedTuple):
    """The solution in the eigenbasis of ``a``.

    Attributes:
      value: the maximum ``f(w*)`` (``f`` evaluated at ``coordinates``).
      coordinates: ``Q^T w*``.
      multiplier: ``mu`` (0 for an interior maximum).
      hard_case: whether the hard-case construction was used.
      interior: whether the maximum is interior (``mu = 0``, ``||w*|| <= R``).
    """

    value: jax.Array
    coordinates: jax.Array
    multiplier: jax.Array
    hard_case: jax.Array
    interior: jax.Array


def _solve_eigenbasis(lam: jax.Array, beta: jax.Array, radius: jax.Array) -> EigenbasisMaximum:
    """Pure ``jnp`` solver (traceable, vmappable); see the module docstring."""
    dtype = lam.dtype
    n = lam.shape[-1]
    eps = jnp.finfo(dtype).eps
    radius = jnp.asarray(radius, dtype)
    zero = jnp.zeros((), dtype)
    lam_max = jnp.max(lam)
    scale = jnp.maximum(jnp.max(jnp.abs(lam)), jnp.finfo(dtype).tiny)
    gap = lam_max - lam
    top = gap <= 4 * n * eps * scale
    gap = jnp.where(top, zero, gap)
    b_norm = jnp.linalg.norm(beta)
    beta_top2 = jnp.sum(jnp.where(top, beta * beta, zero))
    negligible_top = beta_top2 <= (4 * n * eps * b_norm) ** 2
    t_low = jnp.maximum(-lam_max, zero)
    # the beta that the boundary branch sees: a negligible top projection counts as exactly zero
    beta_eff = jnp.where(top & negligible_top, zero, beta)
    nonzero = beta_eff != 0

    def coords(t):
        d = t + gap
        return jnp.where(nonzero, -beta_eff / jnp.where(nonzero, d, 1), zero)

    def h_and_slope(t):
        d = t + gap
        q = jnp.where(nonzero, beta_eff / jnp.where(nonzero, d, 1), zero)
        s2 = jnp.sum(q * q)
        s3 = jnp.sum(jnp.where(nonzero, q * q / jnp.where(nonzero, d, 1), zero))
        inv = jax.lax.rsqrt(jnp.maximum(s2, jnp.finfo(dtype).tiny))
        return inv, inv**3 * s3

    # interior: lambda_max < 0 and ||w(t_low)|| <= R (t_low > 0, every d_i > 0)
    w_low = coords(t_low)
    interior = (lam_max < 0) & (jnp.sum(w_low * w_low) <= radius * radius)
    # hard case: lambda_max >= 0, b (numerically) orthogonal to the top eigenspace, ||w(0)|| < R off it
    rest2 = jnp.sum(jnp.where(top, zero, w_low * w_low))
    hard = (lam_max >= 0) & negligible_top & (rest2 <= radius * radius)
    tau = jnp.sqrt(jnp.maximum(radius * radius - rest2, zero))
    top_norm = jnp.sqrt(beta_top2)
    first_top = jnp.arange(n) == jnp.argmax(top)
    direction = jnp.where(top_norm > 0, -jnp.where(top, beta, zero) / jnp.where(top_norm > 0, top_norm, 1),
                          first_top.astype(dtype))
    w_hard = jnp.where(top, zero, w_low) + tau * direction

    # boundary: safeguarded Newton on h(t) = 1/||w(t)|| = 1/R over [lo, hi]
    lo0 = jnp.maximum(t_low, jnp.max(jnp.abs(beta_eff) / radius - gap))
    hi0 = jnp.maximum(b_norm / radius, lo0)

    def body(_, state):
        t, lo, hi = state
        h, slope = h_and_slope(t)
        g = h - 1 / radius
        lo = jnp.where(g < 0, t, lo)
        hi = jnp.where(g >= 0, t, hi)
        t_newton = t - g / slope
        ok = jnp.isfinite(t_newton) & (t_newton >= lo) & (t_newton <= hi)
        return jnp.where(ok, t_newton, 0.5 * (lo + hi)), lo, hi

    t_root, _, _ = jax.lax.fori_loop(0, NEWTON_ITERATIONS, body, (lo0, lo0, hi0))
    w_boundary = coords(t_root)

    w = jnp.where(interior, w_low, jnp.where(hard, w_hard, w_boundary))
    mu = jnp.where(interior, zero, jnp.where(hard, lam_max, lam_max + t_root))
    value = jnp.sum(lam * w * w) - 2 * jnp.sum(beta * w)
    return EigenbasisMaximum(value, w, mu, hard & ~interior, interior)


_solve_eigenbasis_jit = counted_jit(_solve_eigenbasis)


@counted_jit
def _solve_dense(a: jax.Array, b: jax.Array, radius: jax.Array) -> BallMaximum:
    lam, q = jnp.linalg.eigh(0.5 * (a + a.T))
    sol = _solve_eigenbasis(lam, q.T @ b, radius)
    return BallMaximum(sol.value, q @ sol.coordinates)


def _validate_radius(radius, dtype):
    V.positive_scalar(radius, "radius")
    return radius if V.is_tracer(radius) else jnp.asarray(radius, dtype)


def max_quadratic_in_eigenbasis(eigenvalues, coefficients, radius) -> EigenbasisMaximum:
    """``max_{||c|| <= R} sum_i lambda_i c_i^2 - 2 beta_i c_i``: the ball maximum in the eigenbasis of ``a``.

    For ``a = Q diag(lambda) Q^T`` and ``beta = Q^T b`` this is ``max_{||w|| <= R} w^T a w - 2 b^T w``
    with ``w = Q c`` (docs/statements.md#thm-3-2, Theorem 3.2). It lets a caller with structure skip the dense
    eigendecomposition: for ``a = I_p ⊗ S``, pass ``S``'s eigenvalues tiled ``p`` times.

    Args:
      eigenvalues: ``lambda (n,)``, any order, any signs.
      coefficients: ``beta (n,)``, the same dtype.
      radius: ``R > 0``.

    Returns:
      :class:`EigenbasisMaximum` (value, coordinates, multiplier ``mu``, hard-case and interior flags).
    """
    lam = V.as_float_array(eigenvalues, "eigenvalues", ndim=1)
    beta = V.as_float_array(coefficients, "coefficients", ndim=1)
    if lam.shape != beta.shape:
        raise ValueError(f"eigenvalues {tuple(lam.shape)} and coefficients {tuple(beta.shape)} must have one shape")
    if lam.shape[0] == 0:
        raise ValueError("eigenvalues must be non-empty, got shape (0,)")
    V.check_same_dtype(eigenvalues=lam, coefficients=beta)
    return _solve_eigenbasis_jit(lam, beta, _validate_radius(radius, lam.dtype))


def max_quadratic_on_ball(a, b, radius) -> BallMaximum:
    """Exact ``max_{||w|| <= R} w^T a w - 2 b^T w`` for symmetric ``a`` (the trust-region subproblem).

    docs/statements.md#thm-3-2, Theorem 3.2: ``sup_{||W||_HS <= B} L(W) - L_N(W)`` is such a maximum. The
    maximiser satisfies ``(a - mu I) w = b`` with ``mu >= max(lambda_max(a), 0)`` and
    ``mu (R - ||w||) = 0``; ``mu`` solves the secular equation ``||(a - mu I)^{-1} b|| = R`` by
    safeguarded Newton in a fixed number of iterations, and the hard case (``b`` orthogonal to
    the top eigenspace) adds a top-eigenvector component (see the module docstring). Works under
    ``jax.jit`` and ``jax.vmap``; keeps the dtype it is given.

    Args:
      a: ``(n, n)`` symmetric (to ``64 n eps ||a||``; symmetrised as ``(a + a^T) / 2``).
      b: ``(n,)``, the same dtype.
      radius: ``R > 0``.

    Returns:
      :class:`BallMaximum` ``(value, maximiser)``; ``value = f(maximiser)`` and ``||maximiser|| <= R``
      up to round-off.

    Raises:
      ValueError: ``a`` not square or not symmetric, ``b`` of the wrong shape or dtype, ``radius <= 0``,
        non-finite entries.
    """
    a = V.as_float_array(a, "a", ndim=2)
    if a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ValueError(f"a must be a non-empty square matrix, got shape {tuple(a.shape)}")
    b = V.as_float_array(b, "b", ndim=1)
    if b.shape[0] != a.shape[0]:
        raise ValueError(f"b must have shape ({a.shape[0]},) to match a {tuple(a.shape)}, got {tuple(b.shape)}")
    V.check_same_dtype(a=a, b=b)
    if not V.is_tracer(a):
        an = np.asarray(a, np.float64)
        asym = float(np.max(np.abs(an - an.T))) if an.size else 0.0
        tol = 64 * a.shape[0] * float(np.finfo(np.dtype(a.dtype)).eps) * max(float(np.max(np.abs(an))), 1e-300)
        if asym > tol:
            raise ValueError(f"a must be symmetric: max|a - a^T| = {asym:.3g} > {tol:.3g} (shape {tuple(a.shape)})")
    return _solve_dense(a, b, _validate_radius(radius, a.dtype))
