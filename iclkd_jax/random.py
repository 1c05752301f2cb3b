"""Random attention weights for tests and checks (explicit keys only)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from iclkd_jax import _validation as V
from iclkd_jax.attention import AttentionWeights


def random_attention_weights(key: jax.Array, *, token_dim: int, key_dim: int, value_dim: int,
                             scale: float = 1.0, dtype=None) -> AttentionWeights:
    """Gaussian ``W^Q, W^K (d_k, d)`` and ``W^V (d_v, d)`` with entries ``N(0, scale^2 / d)``.

    With unit-norm tokens the logits ``(W^K x).(W^Q x')`` are then of order ``scale^2``.
    """
    token_dim = V.positive_int(token_dim, "token_dim")
    key_dim = V.positive_int(key_dim, "key_dim")
    value_dim = V.positive_int(value_dim, "value_dim")
    V.positive_scalar(scale, "scale")
    dtype = dtype or jnp.result_type(float)
    kq, kk, kv = jax.random.split(key, 3)
    std = scale / jnp.sqrt(token_dim)
    return AttentionWeights(
        std * jax.random.normal(kq, (key_dim, token_dim), dtype),
        std * jax.random.normal(kk, (key_dim, token_dim), dtype),
        std * jax.random.normal(kv, (value_dim, token_dim), dtype),
    )
