"""Operators ``W : H -> R^{d_v}`` in representer form and their algebra (docs/statements.md#operators).

A :class:`RepresenterOperator` holds ``W = exp(log_scale) sum_i c_i v_i ⊗ phi(k_i)``
exactly by ``(coef, values, keys, log_scale)``; ``phi`` is the exact (infinite)
feature map of ``kappa(u, z) = exp(u . z)``, never materialised:

* ``W phi(z) = exp(log_scale) sum_i c_i v_i exp(k_i . z)``;
* ``||W||_HS^2 = exp(2 log_scale) sum_ij c_i c_j <v_i, v_j> exp(k_i . k_j)``.

``log_scale`` carries factors such as ``1/D'`` that would underflow or overflow on
their own (``D' = e^{1000}``), so every exponential meets its scale in log space.
With an explicit finite map ``phi``, :func:`to_matrix` gives the ``(d_v, m)`` matrix and
both forms agree up to the map's approximation error.

The knowledge distillation built on these operators (teacher, student, KD loss,
one-step distilled weights) is in :mod:`iclkd_jax.distillation`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from iclkd_jax import _validation as V
from iclkd_jax._compile import counted_jit
from iclkd_jax.features import FeatureMap


class RepresenterOperator(NamedTuple):
    """``W = exp(log_scale) sum_i coef_i values_i ⊗ phi(keys_i)`` (a pytree).

    Attributes:
      coef: ``(n,)``.
      values: ``(n, d_v)``.
      keys: ``(n, d_k)``.
      log_scale: scalar.
    """

    coef: jax.Array
    values: jax.Array
    keys: jax.Array
    log_scale: jax.Array


class HSNorm(NamedTuple):
    """A Hilbert-Schmidt norm computed in kernel form, with its numerical condition.

    Attributes:
      value: ``||W||_HS^2`` (never negative: a negative sum from cancellation is clipped to 0).
      log_value: ``log ||W||_HS^2`` (finite where ``value`` overflows; ``-inf`` if clipped).
      condition: ``sum_ij |t_ij| / |sum_ij t_ij|`` for the terms ``t_ij`` of the double sum:
        the relative error is about ``condition * eps``; ``inf`` when the sum cancels to 0
        (1 for the zero operator, whose terms are all exactly 0).
      clipped: True when round-off made the raw sum negative and it was clipped.
    """

    value: jax.Array
    log_value: jax.Array
    condition: jax.Array
    clipped: jax.Array


def validate_operator(op: RepresenterOperator, name: str = "operator") -> RepresenterOperator:
    if not isinstance(op, RepresenterOperator):
        raise ValueError(f"{name} must be a RepresenterOperator, got {type(op).__name__}")
    coef = V.as_float_array(op.coef, f"{name}.coef", ndim=1, min_rows=1)
    values = V.as_float_array(op.values, f"{name}.values", ndim=2)
    keys = V.as_float_array(op.keys, f"{name}.keys", ndim=2)
    log_scale = V.as_float_array(op.log_scale, f"{name}.log_scale", ndim=0)
    if not (coef.shape[0] == values.shape[0] == keys.shape[0]):
        raise ValueError(f"{name}: coef {tuple(coef.shape)}, values {tuple(values.shape)} and keys "
                         f"{tuple(keys.shape)} must share their first dimension")
    V.check_same_dtype(**{f"{name}.coef": coef, f"{name}.values": values, f"{name}.keys": keys})
    return RepresenterOperator(coef, values, keys, log_scale.astype(coef.dtype))


@counted_jit
def _apply(op, z):
    logits = z @ op.keys.T                                     # (q, n)
    # terms with c_i = 0 (the zero operator, or ΔW merged in by add_operators when M = 0) take no part
    # in the shift: their logit (0 for a zero key) could exceed every live logit and underflow them all
    active = jnp.where(op.coef != 0, logits, -jnp.inf)
    shift = jnp.max(active, axis=-1, keepdims=True)
    shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(shift), shift, 0.0))
    scaled = (jnp.exp(active - shift) * op.coef) @ op.values    # (q, d_v)
    # an exactly-zero sum (the zero operator) stays 0 even where exp(shift + log_scale) overflows
    # (ΔW for M = 0 has log_scale = -log D', e.g. +200 in float32): 0 * inf would be a silent NaN
    return jnp.where(scaled == 0, jnp.zeros_like(scaled), scaled * jnp.exp(shift + op.log_scale))


def apply_operator(op: RepresenterOperator, z: ArrayLike) -> jax.Array:
    """``W phi(z)`` for key-space rows ``z (q, d_k)``, exactly, returns ``(q, d_v)``.

    Each row is shifted by its largest logit ``max_i k_i . z`` before ``exp``, and the
    shift is added back together with ``log_scale``.
    """
    op = validate_operator(op)
    z = V.as_float_array(z, "z", ndim=2, last_dim=op.keys.shape[1])
    V.check_same_dtype(z=z, **{"operator.keys": op.keys})
    return _apply(op, z)


@counted_jit
def _hs_norm(op):
    log_kernel = op.keys @ op.keys.T
    shift = jnp.max(log_kernel)
    terms = jnp.outer(op.coef, op.coef) * (op.values @ op.values.T) * jnp.exp(log_kernel - shift)
    raw = jnp.sum(terms)
    absolute = jnp.sum(jnp.abs(terms))
    # all terms exactly 0 (the zero operator): nothing cancelled, condition 1
    condition = jnp.where(raw != 0, absolute / jnp.where(raw != 0, jnp.abs(raw), 1.0),
                          jnp.where(absolute == 0, 1.0, jnp.inf))
    clipped = raw < 0
    positive = jnp.maximum(raw, 0.0)
    log_value = jnp.where(positive > 0, jnp.log(jnp.where(positive > 0, positive, 1.0)), -jnp.inf) \
        + shift + 2.0 * op.log_scale
    return HSNorm(jnp.exp(log_value), log_value, condition, clipped)


def hs_norm(op: RepresenterOperator) -> HSNorm:
    """``||W||_HS^2`` in kernel form with the largest ``exp(k_i . k_j)`` factored out.

    The double sum is a difference of exponentially large terms when the coefficients
    or value inner products change sign; the result reports ``condition`` (relative
    error ≈ condition × eps) and clips a negative raw sum to 0 with ``clipped=True``.
    """
    return _hs_norm(validate_operator(op))


def to_matrix(op: RepresenterOperator, feature_map: FeatureMap) -> jax.Array:
    """The ``(d_v, m)`` matrix ``exp(log_scale) sum_i c_i v_i phi(k_i)^T`` for an explicit map."""
    op = validate_operator(op)
    if not isinstance(feature_map, FeatureMap):
        raise ValueError(f"feature_map must be a FeatureMap, got {type(feature_map).__name__}")
    if feature_map.key_dim != op.keys.shape[1]:
        raise ValueError(f"feature_map has key_dim {feature_map.key_dim} but operator.keys has shape {tuple(op.keys.shape)}")
    features = feature_map(op.keys)
    return jnp.exp(op.log_scale) * ((op.coef[:, None] * op.values).T @ features)


def add_operators(first: RepresenterOperator, second: RepresenterOperator) -> RepresenterOperator:
    """``W_1 + W_2`` as one representer operator (the scales merged in log space)."""
    first, second = validate_operator(first, "first"), validate_operator(second, "second")
    top = jnp.maximum(first.log_scale, second.log_scale)
    coef = jnp.concatenate([first.coef * jnp.exp(first.log_scale - top), second.coef * jnp.exp(second.log_scale - top)])
    return RepresenterOperator(coef, jnp.concatenate([first.values, second.values]),
                               jnp.concatenate([first.keys, second.keys]), top)


def operator_norm(matrix: ArrayLike) -> float:
    """The spectral norm ``||A||_op`` (largest singular value) of a matrix, in NumPy float64.

    A host-side constant of the bounds (``M_V = ||W^V||_op`` in Theorems 4.1 and 4.2,
    ``T = ||W^V||_op R`` in Theorem 3.2), computed once outside traced code.
    """
    matrix = V.as_float_array(matrix, "matrix", ndim=2, min_rows=1)
    return float(np.linalg.norm(np.asarray(matrix, dtype=np.float64), ord=2))
