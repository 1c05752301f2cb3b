"""Trainable softmax-attention models for in-context regression (docs/statements.md#thm-3-1, Theorem 3.1).

Written with ``flax.linen``: its parameters are a plain pytree (a nested dict of
arrays), which is what ``jax.grad``/Optax consume, what a ``.npz`` checkpoint stores
and what :func:`attention_weights` turns back into the library's
:class:`~iclkd_jax.AttentionWeights` without any stateful-object bookkeeping (the
reason ``flax.nnx`` was not used).

Each head is exactly the attention of docs/statements.md: ``Attn(x') = sum_j v_j
softmax_j((W^K z_j) . (W^Q z'))`` with ``v_j = W^V z_j``, **no** ``1/sqrt(d_k)``, no
bias (a constant-1 coordinate in every token plays that role), no residual and no
MLP unless the config asks for them.

Tokens (rows) are ``z = [x, y, 1, p]`` with ``x`` the input, ``y`` the label (0 for
the query: masked), the constant 1 and optional fixed sinusoidal positional
features ``p`` (``positional_dim`` of them, 0 by default). A prompt is the ``N``
demonstrations followed by the query token; the sequence has ``N + 1`` rows.

Masks: the query attends to every demonstration and to itself (so in Theorem 3.1
``X_D`` = the demonstrations and ``X_Q`` = the query token, ``M = 1``). Demonstrations
attend to demonstrations only (no leakage of the query into them), or, with
``causal=True``, to demonstrations at or before their own position. In a one-layer
model only the query row matters.

Readout: without residual (one layer), every head has ``d_v = 1`` and the prediction
is the sum of the heads' outputs at the query (an output projection ``W^O`` is
absorbed into each ``W^V``). With residual, ``d_v = d`` and
``Z^{l+1} = Z^l + sum_h Attn_{l,h}(Z^l)``; the prediction is the ``y`` coordinate of
the query row after the last layer.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from iclkd_jax.attention import AttentionWeights


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of an in-context model.

    Attributes:
      x_dim: dimension of the inputs ``x``.
      num_layers: k (>= 1). More than one layer requires ``residual=True``.
      num_heads: heads per layer.
      key_dim: d_k.
      residual: add each layer's output to its input (``d_v = d``); else ``d_v = 1``.
      mlp_hidden: width of a per-token ReLU MLP after each attention (0 = no MLP).
      positional_dim: fixed sinusoidal positional features appended to tokens (even; 0 = none).
      causal: demonstrations attend only to earlier demonstrations (the query sees all).
      init_scale: std of the initial W^Q, W^K entries times sqrt(d).
    """

    x_dim: int = 3
    num_layers: int = 1
    num_heads: int = 1
    key_dim: int = 8
    residual: bool = False
    mlp_hidden: int = 0
    positional_dim: int = 0
    causal: bool = False
    init_scale: float = 1.0

    def __post_init__(self):
        if self.num_layers < 1 or self.num_heads < 1 or self.key_dim < 1 or self.x_dim < 1:
            raise ValueError(f"x_dim, num_layers, num_heads, key_dim must be >= 1, got {self}")
        if self.num_layers > 1 and not self.residual:
            raise ValueError("a multi-layer model needs residual=True (d_v = d), see experiments.models")
        if self.positional_dim % 2:
            raise ValueError(f"positional_dim must be even, got {self.positional_dim}")

    @property
    def token_dim(self) -> int:
        """d = x_dim + 1 (y) + 1 (constant) + positional_dim."""
        return self.x_dim + 2 + self.positional_dim

    @property
    def value_dim(self) -> int:
        return self.token_dim if self.residual else 1

    @property
    def y_index(self) -> int:
        return self.x_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def positional_features(length: int, dim: int, dtype=jnp.float32) -> jax.Array:
    """Fixed sinusoidal features ``(length, dim)``: ``cos/sin(pi * i / (length * 2^f))``, f < dim/2."""
    if dim == 0:
        return jnp.zeros((length, 0), dtype)
    pos = jnp.arange(length, dtype=dtype)[:, None]
    freqs = math.pi / (length * 2.0 ** jnp.arange(dim // 2, dtype=dtype))[None, :]
    return jnp.concatenate([jnp.cos(pos * freqs), jnp.sin(pos * freqs)], axis=-1)


def make_tokens(config: ModelConfig, x_demos: jax.Array, y_demos: jax.Array, x_query: jax.Array) -> jax.Array:
    """Token sequences ``(..., N + 1, d)``: demonstrations ``[x, y, 1, p]`` then the query ``[x', 0, 1, p]``.

    Args:
      config: the model's :class:`ModelConfig`.
      x_demos: ``(..., N, x_dim)``.
      y_demos: ``(..., N)``.
      x_query: ``(..., x_dim)``; its label is masked to 0.
    """
    dtype = x_demos.dtype
    x = jnp.concatenate([x_demos, x_query[..., None, :]], axis=-2)
    y = jnp.concatenate([y_demos, jnp.zeros_like(y_demos[..., :1])], axis=-1)[..., None]
    ones = jnp.ones_like(y)
    n_tokens = x.shape[-2]
    pos = positional_features(n_tokens, config.positional_dim, dtype)
    pos = jnp.broadcast_to(pos, x.shape[:-2] + pos.shape)
    return jnp.concatenate([x, y, ones, pos], axis=-1)


def attention_mask(n_tokens: int, causal: bool) -> jax.Array:
    """Boolean ``(T, T)``: row i may attend to column j. The last row (the query) sees everything."""
    demo = jnp.arange(n_tokens) < n_tokens - 1
    if causal:
        allowed = jnp.tril(jnp.ones((n_tokens, n_tokens), bool))
    else:
        allowed = jnp.ones((n_tokens, n_tokens), bool)
    allowed = allowed & demo[None, :]                      # demonstrations never see the query
    return allowed.at[-1].set(True)


class SoftmaxAttention(nn.Module):
    """One multi-head softmax-attention layer exactly as in docs/statements.md (no 1/sqrt(d_k), no bias).

    Params: ``wq, wk`` of shape ``(H, d_k, d)`` and ``wv`` of shape ``(H, d_v, d)``.
    """

    num_heads: int
    key_dim: int
    value_dim: int
    init_scale: float = 1.0
    query_only: bool = False

    @nn.compact
    def __call__(self, tokens: jax.Array, mask: jax.Array) -> jax.Array:
        """``tokens (B, T, d)`` -> per-head outputs ``(B, H, T', d_v)`` (T' = 1 with ``query_only``)."""
        d = tokens.shape[-1]
        dtype = tokens.dtype
        qk_init = nn.initializers.normal(self.init_scale / math.sqrt(d), dtype)
        wq = self.param("wq", qk_init, (self.num_heads, self.key_dim, d))
        wk = self.param("wk", qk_init, (self.num_heads, self.key_dim, d))
        wv = self.param("wv", nn.initializers.normal(0.1 / math.sqrt(d), dtype), (self.num_heads, self.value_dim, d))
        queries = tokens[:, -1:, :] if self.query_only else tokens
        row_mask = mask[-1:] if self.query_only else mask
        q = jnp.einsum("btd,hkd->bhtk", queries, wq)
        k = jnp.einsum("btd,hkd->bhtk", tokens, wk)
        v = jnp.einsum("btd,hvd->bhtv", tokens, wv)
        logits = jnp.einsum("bhsk,bhtk->bhst", q, k)
        logits = jnp.where(row_mask[None, None], logits, -jnp.inf)
        return jnp.einsum("bhst,bhtv->bhsv", jax.nn.softmax(logits, axis=-1), v)


class ICLTransformer(nn.Module):
    """k layers of :class:`SoftmaxAttention` (optional residual and MLP) with the readout of the module docstring."""

    config: ModelConfig

    def setup(self):
        c = self.config
        only_query = not c.residual
        self.layers = [SoftmaxAttention(c.num_heads, c.key_dim, c.value_dim, c.init_scale, query_only=only_query)
                       for i in range(c.num_layers)]
        self.mlps = [nn.Sequential([nn.Dense(c.mlp_hidden), nn.relu, nn.Dense(c.token_dim)])
                     for i in range(c.num_layers)] if c.mlp_hidden else []

    def __call__(self, tokens: jax.Array, return_states: bool = False):
        """``tokens (B, N + 1, d)`` -> predictions ``(B,)`` (and, optionally, the residual stream per layer)."""
        c = self.config
        mask = attention_mask(tokens.shape[-2], c.causal)
        if not c.residual:
            out = self.layers[0](tokens, mask)              # (B, H, 1, 1)
            if self.mlps:
                raise ValueError("mlp_hidden needs residual=True")
            pred = jnp.sum(out[:, :, 0, 0], axis=1)
            return (pred, [tokens]) if return_states else pred
        states = [tokens]
        z = tokens
        for i, layer in enumerate(self.layers):
            z = z + jnp.sum(layer(z, mask), axis=1)
            if self.mlps:
                z = z + self.mlps[i](z)
            states.append(z)
        pred = z[:, -1, c.y_index]
        return (pred, states) if return_states else pred


def init_params(config: ModelConfig, key: jax.Array, dtype=jnp.float32, n_demos: int = 4) -> dict:
    """Initial parameters from an explicit key (``dtype`` float32 by default)."""
    tokens = jnp.zeros((1, n_demos + 1, config.token_dim), dtype)
    return ICLTransformer(config).init(key, tokens)["params"]


def predict(config: ModelConfig, params: dict, tokens: jax.Array) -> jax.Array:
    """Predictions ``(B,)`` of the model for token sequences ``(B, N + 1, d)``."""
    return ICLTransformer(config).apply({"params": params}, tokens)


def residual_states(config: ModelConfig, params: dict, tokens: jax.Array) -> list[jax.Array]:
    """The residual stream ``[Z^0, ..., Z^k]`` (each ``(B, N + 1, d)``); ``[Z^0]`` for a one-layer model."""
    return ICLTransformer(config).apply({"params": params}, tokens, return_states=True)[1]


def attention_weights(params: dict, layer: int = 0, head: int = 0) -> AttentionWeights:
    """The ``(W^Q, W^K, W^V)`` of one head as the library's :class:`~iclkd_jax.AttentionWeights`."""
    p = params[f"layers_{layer}"]
    return AttentionWeights(p["wq"][head], p["wk"][head], p["wv"][head])
