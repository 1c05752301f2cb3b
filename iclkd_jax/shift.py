"""Distribution shift of the distilled weights (THEOREMS.md, Theorems 4.1 and 4.2).

The population one-step distilled weights of a token distribution P are

    W̄(P) = 2 eta E_{x~P}[ W^V x ⊗ phi(W^K x) ],

and for a prompt distribution 𝒬 and a target 𝒟 (both empirical measures here, which
is where Theorems 4.1 and 4.2 hold exactly)

    ΔW = W̄(𝒬) - W̄(𝒟) = 2 eta ( (1/n) sum_{x in 𝒬} - (1/m) sum_{x in 𝒟} ) W^V x ⊗ phi(W^K x),

held exactly as one :class:`~iclkd_jax.operators.RepresenterOperator` with
coefficients ``+1/n`` (prompt) and ``-1/m`` (target) and ``log_scale = log(2 eta)``;
``hs_norm`` of it gives ``||ΔW||_HS^2`` with its condition.

The KD risk of Theorem 4.2, ``L(W) = E_x ||W^V x - W phi(W^K x)||^2``, is
:func:`kd_risk` on an empirical measure (a reference sample) for a representer operator.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from iclkd_jax import _validation as V
from iclkd_jax._compile import counted_jit
from iclkd_jax.attention import AttentionWeights, _validate_tokens, validate_weights
from iclkd_jax.operators import RepresenterOperator, _resolve_log_eta, student, teacher


def distilled_weight_difference(weights: AttentionWeights, target: ArrayLike, prompt: ArrayLike, *,
                                eta: ArrayLike | None = None,
                                log_eta: ArrayLike | None = None) -> RepresenterOperator:
    """``ΔW = W̄(𝒬) - W̄(𝒟)`` for the empirical measures of ``prompt`` (𝒬) and ``target`` (𝒟).

    ``W̄(P) = 2 eta E_P[W^V x ⊗ phi(W^K x)]`` (THEOREMS.md, Theorem 4.1); equals
    ``distilled_weights(weights, prompt) - distilled_weights(weights, target)`` (Theorem
    3.1(b) with the same ``eta``) as one operator.

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
    target = _validate_tokens(weights, target, "target", min_rows=1)
    prompt = _validate_tokens(weights, prompt, "prompt", min_rows=1)
    V.check_same_dtype(target=target, prompt=prompt)
    log_eta = _resolve_log_eta(eta, log_eta, target.dtype)
    return _difference(weights.wk, weights.wv, target, prompt, log_eta)


@counted_jit
def _difference(wk, wv, target, prompt, log_eta):
    n, m = prompt.shape[0], target.shape[0]
    tokens = jnp.concatenate([prompt, target])
    coef = jnp.concatenate([jnp.full((n,), 1.0 / n, target.dtype), jnp.full((m,), -1.0 / m, target.dtype)])
    return RepresenterOperator(coef, tokens @ wv.T, tokens @ wk.T, jnp.log(jnp.asarray(2.0, target.dtype)) + log_eta)


def kd_risk(w: RepresenterOperator, weights: AttentionWeights, tokens: ArrayLike) -> jax.Array:
    """The KD risk ``L(W) = (1/N) sum_i ||W^V x_i - W phi(W^K x_i)||^2`` of an exact operator.

    On the empirical measure of ``tokens (N, d)``; the population risk of THEOREMS.md
    (Theorems 3.2 and 4.2) when ``tokens`` is a reference sample.
    """
    return _mean_square(teacher(weights, tokens) - student(w, weights, tokens))


@counted_jit
def _mean_square(residual):
    return jnp.mean(jnp.sum(residual * residual, axis=-1))


__all__ = ["distilled_weight_difference", "kd_risk"]
