"""A small attention problem shared by the operator, distillation and attention-operator tests."""

import jax
import jax.numpy as jnp

import iclkd_jax as ik

D, DK, DV = 4, 3, 2


def problem(key, n=5, m=3, *, scale=0.5, dtype=jnp.float64):
    kw, kd, kc, kq = jax.random.split(key, 4)
    w = ik.random_attention_weights(kw, token_dim=D, key_dim=DK, value_dim=DV, scale=scale, dtype=dtype)
    return (w, jax.random.normal(kd, (n, D), dtype), jax.random.normal(kc, (m, D), dtype),
            jax.random.normal(kq, (D,), dtype))
