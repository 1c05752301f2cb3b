"""Operators ``W : H -> R^{d_v}`` and the one-step KD of Theorem 3.1(b) (THEOREMS.md, "Weights as operators").

A :class:`RepresenterOperator` holds ``W = exp(log_scale) sum_i c_i v_i ⊗ phi(k_i)``
exactly by ``(coef, values, keys, log_scale)``; ``phi`` is the exact (infinite)
feature map of ``kappa(u, z) = exp(u . z)``, never materialised:

* ``W phi(z) = exp(log_scale) sum_i c_i v_i exp(k_i . z)``;
* ``||W||_HS^2 = exp(2 log_scale) sum_ij c_i c_j <v_i, v_j> exp(k_i . k_j)``.

``log_scale`` carries factors such as ``1/D'`` that would underflow or overflow on
their own (``D' = e^{1000}``), so every exponential meets its scale in log space.
With an explicit finite map ``phi``, :func:`to_matrix` gives the ``(d_v, m)`` matrix and
both forms agree up to the map's approximation error.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from iclkd_jax import _validation as V
from iclkd_jax._compile import counted_jit
from iclkd_jax.attention import AttentionWeights, _kd_decomposition, _validate_tokens, validate_weights
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
    shift = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    scaled = (jnp.exp(logits - shift) * op.coef) @ op.values    # (q, d_v)
    return scaled * jnp.exp(shift + op.log_scale)


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


def teacher(weights: AttentionWeights, tokens: ArrayLike) -> jax.Array:
    """``f_T(x) = W^V x`` for rows ``tokens (n, d)``, returns ``(n, d_v)``."""
    weights = validate_weights(weights)
    tokens = _validate_tokens(weights, tokens, "tokens", min_rows=1)
    return tokens @ weights.wv.T


def student(w: RepresenterOperator | ArrayLike, weights: AttentionWeights, tokens: ArrayLike,
            feature_map: FeatureMap | None = None) -> jax.Array:
    """``f_S(x; W) = W phi(W^K x)`` for rows ``tokens (n, d)``, returns ``(n, d_v)``.

    ``w`` is a :class:`RepresenterOperator` (exact kernel form) or, with ``feature_map``,
    a ``(d_v, m)`` matrix.
    """
    weights = validate_weights(weights)
    tokens = _validate_tokens(weights, tokens, "tokens", min_rows=1)
    keys = tokens @ weights.wk.T
    if isinstance(w, RepresenterOperator):
        return apply_operator(w, keys)
    if feature_map is None:
        raise ValueError("student: a matrix w needs the feature_map it is expressed in")
    w = V.as_float_array(w, "w", ndim=2, last_dim=feature_map.num_features)
    return feature_map(keys) @ w.T


def kd_loss(w: ArrayLike, feature_map: FeatureMap, weights: AttentionWeights, tokens: ArrayLike) -> jax.Array:
    """The KD loss ``L(W) = (1/N) sum_i ||W^V x_i − W phi(W^K x_i)||^2`` for an explicit map.

    Differentiable in ``w`` (THEOREMS.md, Theorem 3.1(b): ``grad L(0) = −(2/N) sum_i v_i ⊗ phi(k_i)``).
    """
    weights = validate_weights(weights)
    tokens = _validate_tokens(weights, tokens, "tokens", min_rows=1)
    if not isinstance(feature_map, FeatureMap):
        raise ValueError(f"feature_map must be a FeatureMap, got {type(feature_map).__name__}")
    if feature_map.key_dim != weights.wk.shape[0]:
        raise ValueError(f"feature_map has key_dim {feature_map.key_dim} but weights.wk has shape {tuple(weights.wk.shape)}")
    # shape-only on tracers (jax.grad passes one), so the check never blocks differentiation
    w = V.as_float_array(w, "w", ndim=2)
    expected = (weights.wv.shape[0], feature_map.num_features)
    if tuple(w.shape) != expected:
        raise ValueError(f"w must be (d_v, m) = {expected} for {feature_map!r}, got shape {tuple(w.shape)}")
    return _kd_loss(w, feature_map, weights, tokens)


def _kd_loss(w, feature_map, weights, tokens):
    residual = tokens @ weights.wv.T - feature_map(tokens @ weights.wk.T) @ w.T
    return jnp.mean(jnp.sum(residual * residual, axis=-1))


def _resolve_log_eta(eta, log_eta, dtype):
    if (eta is None) == (log_eta is None):
        raise ValueError("give exactly one of eta or log_eta")
    if eta is not None:
        V.positive_scalar(eta, "eta")
        return jnp.log(jnp.asarray(eta, dtype))
    if not V.is_tracer(log_eta):
        V.as_float_array(jnp.asarray(log_eta, dtype), "log_eta", ndim=0)
    return jnp.asarray(log_eta, dtype)


def distilled_weights(weights: AttentionWeights, tokens: ArrayLike, *, eta: ArrayLike | None = None,
                      log_eta: ArrayLike | None = None,
                      feature_map: FeatureMap | None = None) -> RepresenterOperator | jax.Array:
    """One KD step from ``W = 0`` on ``tokens`` (THEOREMS.md, Theorem 3.1(b)).

    ``W_1 = 0 − eta grad L(0) = (2 eta / N) sum_i v_i ⊗ phi(k_i)``, with
    ``v_i = W^V x_i`` and ``k_i = W^K x_i``. With ``eta = N / (2 D')`` this is the
    ``W_0`` of Theorem 3.1(a). Give ``eta`` or, for step sizes that under/overflow,
    ``log_eta``.

    Returns:
      A :class:`RepresenterOperator` (exact), or, with ``feature_map``, the
      ``(d_v, m)`` matrix of the same step in that map's features.
    """
    weights = validate_weights(weights)
    tokens = _validate_tokens(weights, tokens, "tokens", min_rows=1)
    log_eta = _resolve_log_eta(eta, log_eta, tokens.dtype)
    n = tokens.shape[0]
    op = RepresenterOperator(jnp.ones((n,), tokens.dtype), tokens @ weights.wv.T, tokens @ weights.wk.T,
                             jnp.log(jnp.asarray(2.0 / n, tokens.dtype)) + log_eta)
    if feature_map is None:
        return op
    return to_matrix(op, feature_map)


def attention_operators(weights: AttentionWeights, demos: ArrayLike, context: ArrayLike | None,
                        query: ArrayLike) -> tuple[RepresenterOperator, RepresenterOperator]:
    """``(W_0, ΔW)`` of Theorem 3.1(a) for one query token ``x' (d,)`` as representer operators.

    ``W_0 = (1/D') sum_{i<=N} v_i ⊗ phi(k_i)``, ``ΔW = (1/D') sum_{j<=M} v'_j ⊗ phi(k'_j)``,
    ``log_scale = −log D'``. When M = 0, ``ΔW`` is the zero operator (one zero term).
    """
    weights = validate_weights(weights)
    query = V.as_float_array(query, "query", ndim=1, last_dim=weights.token_dim)
    V.check_same_dtype(query=query, **{"weights.wk": weights.wk})
    demos = _validate_tokens(weights, demos, "demos", min_rows=1)
    if context is None:
        context = jnp.zeros((0, weights.token_dim), demos.dtype)
    context = _validate_tokens(weights, context, "context", min_rows=0)
    log_scale = -_kd_decomposition(weights, demos, context, query[None, :]).log_partition[0]
    w0 = RepresenterOperator(jnp.ones((demos.shape[0],), demos.dtype), demos @ weights.wv.T,
                             demos @ weights.wk.T, log_scale)
    if context.shape[0] == 0:
        zero = jnp.zeros((1, weights.wv.shape[0]), demos.dtype)
        return w0, RepresenterOperator(jnp.zeros((1,), demos.dtype), zero,
                                       jnp.zeros((1, weights.wk.shape[0]), demos.dtype), log_scale)
    dw = RepresenterOperator(jnp.ones((context.shape[0],), demos.dtype), context @ weights.wv.T,
                             context @ weights.wk.T, log_scale)
    return w0, dw
