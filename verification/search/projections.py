"""Constraint sets of the worst-case search: projections (applied after every step) and reparametrisations.

Norm balls, spectral balls and boxes are projections; simplices and isometries are better written as
reparametrisations inside an objective (:func:`simplex`, :func:`qr_isometry`, :func:`cayley`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def project_rows_to_ball(x: jax.Array, radius: float) -> jax.Array:
    """Each row of ``x (n, d)`` scaled into the Euclidean ball ``||x_i|| <= radius`` (the nearest point)."""
    norms = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x * jnp.minimum(1.0, radius / jnp.maximum(norms, jnp.finfo(x.dtype).tiny))


def project_to_ball(x: jax.Array, radius: float) -> jax.Array:
    """``x`` (any shape) scaled into the Frobenius ball ``||x||_F <= radius`` (the nearest point)."""
    norm = jnp.linalg.norm(x.reshape(-1))
    return x * jnp.minimum(1.0, radius / jnp.maximum(norm, jnp.finfo(x.dtype).tiny))


def project_to_spectral_ball(a: jax.Array, radius: float) -> jax.Array:
    """The nearest matrix (in Frobenius norm) with ``||a||_op <= radius``: singular values clipped at ``radius``."""
    u, s, vt = jnp.linalg.svd(a, full_matrices=False)
    return (u * jnp.minimum(s, radius)) @ vt


def project_to_box(x: jax.Array, low: float, high: float) -> jax.Array:
    return jnp.clip(x, low, high)


def project_to_simplex(v: jax.Array) -> jax.Array:
    """The Euclidean projection of ``v (k,)`` onto the probability simplex (sort-based, Duchi et al. 2008)."""
    k = v.shape[-1]
    u = jnp.sort(v)[::-1]
    css = jnp.cumsum(u) - 1.0
    index = jnp.arange(1, k + 1, dtype=v.dtype)
    rho = jnp.sum(u - css / index > 0)
    theta = css[rho - 1] / rho.astype(v.dtype)
    return jnp.maximum(v - theta, 0.0)


def simplex(logits: jax.Array) -> jax.Array:
    """Mixture weights from unconstrained logits (the softmax reparametrisation of the open simplex)."""
    return jax.nn.softmax(logits)


def qr_isometry(a: jax.Array) -> jax.Array:
    """A matrix with orthonormal columns from ``a (n, k)``, ``n >= k``: Q of ``a = QR`` with ``diag(R) > 0``.

    The sign fix makes the map single-valued (and continuous where ``a`` has full rank), so it can
    be used as a reparametrisation of the Stiefel manifold inside a differentiated objective.
    """
    q, r = jnp.linalg.qr(a)
    signs = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(a.dtype)
    return q * signs[None, :]


def cayley(a: jax.Array) -> jax.Array:
    """An orthogonal matrix ``(I - S)^{-1} (I + S)`` from the skew part ``S = (a - a^T)/2`` of ``a (n, n)``."""
    s = 0.5 * (a - a.T)
    eye = jnp.eye(a.shape[0], dtype=a.dtype)
    return jnp.linalg.solve(eye - s, eye + s)
