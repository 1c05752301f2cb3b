"""Knowledge distillation from the frozen teacher ``W^V`` (docs/statements.md#thm-3-1b, Theorems 3.1(b), 3.2, 4.1, 4.2).

Teacher ``f_T(x) = W^V x``; student ``f_S(x; W) = W phi(W^K x)``; KD loss (risk) of a
student on tokens ``x_1..x_N``

    L(W) = (1/N) sum_i ||W^V x_i - W phi(W^K x_i)||^2.

``W`` is either an exact :class:`~iclkd_jax.operators.RepresenterOperator` (``phi`` the
infinite feature map of ``exp(u . z)``, kernel form) or a ``(d_v, m)`` matrix in the
features of an explicit ``feature_map``. Every function here takes its arguments in one
order, ``(w, weights, tokens, *, feature_map=None)``: the student first, then the head
that defines teacher and keys, then the tokens it is evaluated on.

One KD step from ``W = 0`` (Theorem 3.1(b)) and the population distilled weights
``W̄(P) = 2 eta E_{x~P}[W^V x ⊗ phi(W^K x)]`` of Theorem 4.1 are representer operators
with coefficients ``1/N`` (or ``+1/n``, ``-1/m`` for the difference ``ΔW``) and
``log_scale = log(2 eta)``, so ``eta`` may be given as ``log_eta`` when it under- or
overflows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from iclkd_jax import _validation as V
from iclkd_jax._compile import counted_jit
from iclkd_jax.attention import AttentionWeights, validate_tokens, validate_weights
from iclkd_jax.features import FeatureMap
from iclkd_jax.operators import RepresenterOperator, apply_operator, to_matrix


def teacher(weights: AttentionWeights, tokens: ArrayLike) -> jax.Array:
    """``f_T(x) = W^V x`` for rows ``tokens (n, d)``, returns ``(n, d_v)``."""
    weights = validate_weights(weights)
    tokens = validate_tokens(weights, tokens, "tokens", min_rows=1)
    return tokens @ weights.wv.T


def _validate_feature_map(feature_map, weights: AttentionWeights) -> FeatureMap:
    if not isinstance(feature_map, FeatureMap):
        raise ValueError(f"feature_map must be a FeatureMap, got {type(feature_map).__name__}")
    if feature_map.key_dim != weights.wk.shape[0]:
        raise ValueError(f"feature_map has key_dim {feature_map.key_dim} but weights.wk has shape {tuple(weights.wk.shape)}")
    return feature_map


def _validate_student(w, weights: AttentionWeights, feature_map):
    """``w`` as an exact operator, or as a ``(d_v, m)`` matrix of ``feature_map``'s features."""
    if isinstance(w, RepresenterOperator):
        if feature_map is not None:
            raise ValueError("feature_map is only for a matrix w; a RepresenterOperator is exact (kernel form)")
        return w
    if feature_map is None:
        raise ValueError("a matrix w needs the feature_map it is expressed in (feature_map=...)")
    _validate_feature_map(feature_map, weights)
    # shape-only on tracers (jax.grad passes one), so the check never blocks differentiation
    w = V.as_float_array(w, "w", ndim=2)
    expected = (weights.wv.shape[0], feature_map.num_features)
    if tuple(w.shape) != expected:
        raise ValueError(f"w must be (d_v, m) = {expected} for {feature_map!r}, got shape {tuple(w.shape)}")
    return w


def _student(w, keys, feature_map):
    if isinstance(w, RepresenterOperator):
        return apply_operator(w, keys)
    return feature_map(keys) @ w.T


def student(w: RepresenterOperator | ArrayLike, weights: AttentionWeights, tokens: ArrayLike, *,
            feature_map: FeatureMap | None = None) -> jax.Array:
    """``f_S(x; W) = W phi(W^K x)`` for rows ``tokens (n, d)``, returns ``(n, d_v)``.

    Args:
      w: a :class:`~iclkd_jax.operators.RepresenterOperator` (exact kernel form) or,
        with ``feature_map``, a ``(d_v, m)`` matrix.
      weights: the head; ``W^K`` gives the keys ``W^K x``.
      tokens: ``(n, d)``.
      feature_map: the explicit map a matrix ``w`` is expressed in (``None`` for an operator).
    """
    weights = validate_weights(weights)
    tokens = validate_tokens(weights, tokens, "tokens", min_rows=1)
    w = _validate_student(w, weights, feature_map)
    return _student(w, tokens @ weights.wk.T, feature_map)


def kd_loss(w: RepresenterOperator | ArrayLike, weights: AttentionWeights, tokens: ArrayLike, *,
            feature_map: FeatureMap | None = None) -> jax.Array:
    """The KD loss ``L(W) = (1/N) sum_i ||W^V x_i - W phi(W^K x_i)||^2`` on ``tokens (N, d)``.

    ``w`` as in :func:`student`. Differentiable in a matrix ``w`` (docs/statements.md#thm-3-1b, Theorem
    3.1(b): ``grad L(0) = -(2/N) sum_i v_i ⊗ phi(k_i)``), e.g.
    ``jax.grad(kd_loss)(w, weights, tokens, feature_map=fm)``.

    Returns:
      A scalar of the tokens' dtype.
    """
    weights = validate_weights(weights)
    tokens = validate_tokens(weights, tokens, "tokens", min_rows=1)
    w = _validate_student(w, weights, feature_map)
    residual = tokens @ weights.wv.T - _student(w, tokens @ weights.wk.T, feature_map)
    return _mean_square(residual)


def kd_risk(w: RepresenterOperator | ArrayLike, weights: AttentionWeights, reference: ArrayLike, *,
            feature_map: FeatureMap | None = None) -> jax.Array:
    """The population KD risk ``L(W) = E_x ||W^V x - W phi(W^K x)||^2`` on a reference sample.

    The risk of docs/statements.md#thm-3-2, Theorems 3.2 and 4.2, estimated by the empirical measure of
    ``reference (N, d)``: :func:`kd_loss` on that sample (same arguments, same order).
    """
    return kd_loss(w, weights, reference, feature_map=feature_map)


@counted_jit
def _mean_square(residual):
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
    """One KD step from ``W = 0`` on ``tokens`` (docs/statements.md#thm-3-1b, Theorem 3.1(b)).

    ``W_1 = 0 - eta grad L(0) = (2 eta / N) sum_i v_i ⊗ phi(k_i)``, with
    ``v_i = W^V x_i`` and ``k_i = W^K x_i``. With ``eta = N / (2 D')`` this is the
    ``W_0`` of Theorem 3.1(a). Give ``eta`` or, for step sizes that under/overflow,
    ``log_eta``.

    Returns:
      A :class:`~iclkd_jax.operators.RepresenterOperator` (exact), or, with
      ``feature_map``, the ``(d_v, m)`` matrix of the same step in that map's features.
    """
    weights = validate_weights(weights)
    tokens = validate_tokens(weights, tokens, "tokens", min_rows=1)
    log_eta = _resolve_log_eta(eta, log_eta, tokens.dtype)
    n = tokens.shape[0]
    op = RepresenterOperator(jnp.ones((n,), tokens.dtype), tokens @ weights.wv.T, tokens @ weights.wk.T,
                             jnp.log(jnp.asarray(2.0 / n, tokens.dtype)) + log_eta)
    if feature_map is None:
        return op
    return to_matrix(op, feature_map)


def distilled_weight_difference(weights: AttentionWeights, target: ArrayLike, prompt: ArrayLike, *,
                                eta: ArrayLike | None = None,
                                log_eta: ArrayLike | None = None) -> RepresenterOperator:
    """``ΔW = W̄(𝒬) - W̄(𝒟)`` for the empirical measures of ``prompt`` (𝒬) and ``target`` (𝒟).

    ``W̄(P) = 2 eta E_P[W^V x ⊗ phi(W^K x)]`` (docs/statements.md#thm-4-1, Theorem 4.1); equals
    ``distilled_weights(weights, prompt) - distilled_weights(weights, target)`` (Theorem
    3.1(b) with the same ``eta``) as one operator, so ``hs_norm`` of it is
    ``||ΔW||_HS^2`` with its condition.

    Args:
      weights: the attention maps (only ``W^K`` and ``W^V`` are used).
      target: 𝒟's tokens ``(m, d)``.
      prompt: 𝒬's tokens ``(n, d)``.
      eta, log_eta: the step size (give exactly one; ``log_eta`` for extreme values).

    Returns:
      The representer operator ``(coef, values, keys, log_scale)`` with ``coef = [+1/n]*n + [-1/m]*m``,
      rows ``[prompt; target]``, ``log_scale = log(2 eta)``.
    """
    weights = validate_weights(weights)
    target = validate_tokens(weights, target, "target", min_rows=1)
    prompt = validate_tokens(weights, prompt, "prompt", min_rows=1)
    V.check_same_dtype(target=target, prompt=prompt)
    log_eta = _resolve_log_eta(eta, log_eta, target.dtype)
    return _difference(weights.wk, weights.wv, target, prompt, log_eta)


@counted_jit
def _difference(wk, wv, target, prompt, log_eta):
    n, m = prompt.shape[0], target.shape[0]
    tokens = jnp.concatenate([prompt, target])
    coef = jnp.concatenate([jnp.full((n,), 1.0 / n, target.dtype), jnp.full((m,), -1.0 / m, target.dtype)])
    return RepresenterOperator(coef, tokens @ wv.T, tokens @ wk.T, jnp.log(jnp.asarray(2.0, target.dtype)) + log_eta)
