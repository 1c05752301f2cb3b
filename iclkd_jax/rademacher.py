"""Empirical Rademacher complexity of the HS-ball student class (docs/statements.md#thm-3-2, Theorem 3.2).

For the scalar class ``{x -> <w, phi(k(x))> : ||w|| <= B}`` on keys ``k_1..k_N`` with Gram
matrix ``K_ij = kappa(k_i, k_j) = <phi(k_i), phi(k_j)>``,

    R_N = E_sigma sup_{||w|| <= B} (1/N) sum_i sigma_i <w, phi(k_i)>
        = (B/N) E_sigma ||sum_i sigma_i phi(k_i)||
        = (B/N) E_sigma sqrt(sigma^T K sigma)                      (closed form of the sup)
       <= (B/N) sqrt(E_sigma sigma^T K sigma) = (B/N) sqrt(tr K)  (Jensen; E sigma sigma^T = I)
       <= B C / sqrt(N)                                           (kappa(k_i, k_i) <= C^2).

Everything is in kernel form, so the exact (infinite) feature map is covered through its
Gram matrix ``exp(k_i . k_j)``. The expectation over sign vectors is estimated by Monte
Carlo (:func:`rademacher_complexity`) or, for ``N <= 20``, by enumeration of all ``2^N``
sign vectors (:func:`rademacher_exact`).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from iclkd_jax import _validation as V
from iclkd_jax._compile import counted_jit


class RademacherEstimate(NamedTuple):
    """Monte Carlo estimate of ``R_N = (B/N) E_sigma sqrt(sigma^T K sigma)``.

    Attributes:
      estimate: the Monte Carlo mean of ``(B/N) sqrt(sigma^T K sigma)``.
      standard_error: its standard error (sample std / sqrt(num_signs)).
      closed_form: ``(B/N) sqrt(tr K)``, the Jensen upper bound.
      mean_square: the Monte Carlo mean of ``sigma^T K sigma`` (unbiased for ``tr K``).
      mean_square_se: its standard error.
      trace: ``tr K``.
    """

    estimate: jax.Array
    standard_error: jax.Array
    closed_form: jax.Array
    mean_square: jax.Array
    mean_square_se: jax.Array
    trace: jax.Array


def _check_gram(gram) -> jax.Array:
    gram = V.as_float_array(gram, "gram", ndim=2)
    if gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
        raise ValueError(f"gram must be a non-empty square matrix, got shape {tuple(gram.shape)}")
    return gram


def rademacher_closed_form(gram, radius) -> jax.Array:
    """``(B/N) sqrt(tr K)`` (docs/statements.md#thm-3-2, Theorem 3.2): the Jensen bound on the empirical Rademacher complexity.

    Args:
      gram: ``K (N, N)``, ``K_ij = kappa(k_i, k_j)``.
      radius: ``B > 0``.
    """
    gram = _check_gram(gram)
    V.positive_scalar(radius, "radius")
    return radius / gram.shape[0] * jnp.sqrt(jnp.maximum(jnp.trace(gram), 0))


def _quadratic_forms(signs: jax.Array, gram: jax.Array) -> jax.Array:
    """``sigma^T K sigma`` per row of ``signs``, clipped at 0 (round-off of an indefinite-looking K)."""
    return jnp.maximum(jnp.sum((signs @ gram) * signs, axis=-1), 0)


@counted_jit
def _rademacher_mc(signs, gram, radius):
    n, s = gram.shape[0], signs.shape[0]
    sq = _quadratic_forms(signs, gram)
    norms = jnp.sqrt(sq)
    scale = radius / n
    return RademacherEstimate(scale * jnp.mean(norms), scale * jnp.std(norms, ddof=1) / jnp.sqrt(s),
                              scale * jnp.sqrt(jnp.maximum(jnp.trace(gram), 0)), jnp.mean(sq),
                              jnp.std(sq, ddof=1) / jnp.sqrt(s), jnp.trace(gram))


def rademacher_complexity(key: jax.Array, gram, radius, *, num_signs: int = 4096) -> RademacherEstimate:
    """Monte Carlo ``R_N = (B/N) E_sigma ||sum_i sigma_i phi(k_i)||`` over i.i.d. sign vectors.

    docs/statements.md#thm-3-2, Theorem 3.2: ``||sum_i sigma_i phi(k_i)||^2 = sigma^T K sigma``; the estimate must not
    exceed ``closed_form = (B/N) sqrt(tr K)`` beyond its standard error, and ``mean_square`` is
    unbiased for ``tr K``.

    Args:
      key: a ``jax.random.key``.
      gram: ``K (N, N)`` (positive semi-definite).
      radius: ``B > 0``.
      num_signs: Monte Carlo sign vectors (>= 2).
    """
    if not isinstance(key, jax.Array):
        raise ValueError(f"key must be a jax.random.key, got {type(key).__name__}")
    gram = _check_gram(gram)
    V.positive_scalar(radius, "radius")
    num_signs = V.positive_int(num_signs, "num_signs", minimum=2)
    signs = jax.random.rademacher(key, (num_signs, gram.shape[0]), gram.dtype)
    return _rademacher_mc(signs, gram, jnp.asarray(radius, gram.dtype))


def rademacher_exact(gram, radius) -> float:
    """``R_N`` by enumeration of all ``2^N`` sign vectors (float64 NumPy; ``N <= 20``), for tests."""
    gram = np.asarray(_check_gram(gram), np.float64)
    n = gram.shape[0]
    if n > 20:
        raise ValueError(f"rademacher_exact enumerates 2^N sign vectors; N = {n} > 20")
    V.positive_scalar(radius, "radius")
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=n)))
    sq = np.maximum(np.einsum("si,ij,sj->s", signs, gram, signs), 0)
    return float(radius / n * np.mean(np.sqrt(sq)))
