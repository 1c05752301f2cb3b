"""A llama-architecture causal language model as a pure function of its weights (docs/statements.md#real-models, "Real models").

The forward pass of a decoder such as SmolLM2-135M: token embeddings, then per layer

    x   = RMSNorm(h) * g_attn                               (the attention's tokens)
    q_h = R(t) W^Q_h x_t,   k_g = R(p) W^K_g x_p / sqrt(d_head),   v_g = W^V_g x_p
    h  += sum_h W^O_h softmax_causal(q_h . k_{g(h)}) v_{g(h)}        (grouped-query: g(h) = h // (H / H_kv))
    h  += W_down (silu(W_gate y) * (W_up y)),   y = RMSNorm(h) * g_ffn

and ``logits = RMSNorm(h) * g_out @ E^T`` with tied embeddings ``E``. ``R(p)`` rotates
**adjacent** coordinate pairs ``(2i, 2i + 1)`` by the angle ``p * base^(-2i / d_head)``:
that is the layout of GGUF files, whose conversion reorders the query and key rows of
the Hugging Face checkpoints (whose ``rotate_half`` pairs ``i`` with ``i + d_head/2``).
The ``1/sqrt(d_head)`` is folded into the keys (docs/statements.md: a temperature is absorbed
into ``W^K``), so each query head is exactly Theorem 3.1's attention with
position-dependent keys ``k_j = R(p_j) W^K x_j``.

The weights are a :class:`LlamaParams` pytree with the layers stacked on a leading
axis, so the layer loop is one ``lax.scan`` (one compilation for all layers). Every
function keeps the dtype of the weights it is given (float32 or float64). Reading a
checkpoint is not done here (the library has no I/O): see ``verification/real_models/smollm2.py``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from iclkd_jax._compile import counted_jit


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """The architecture (hashable: a static argument of the compiled forward pass).

    Attributes:
      vocab_size, hidden, layers: ``V``, ``d``, ``L``.
      heads, kv_heads, head_dim: query heads ``H``, key/value heads ``H_kv`` (``H % H_kv == 0``), ``d_head``.
      ffn: width of the SwiGLU MLP.
      rope_base: the rotary base (1e5 for SmolLM2).
      rms_eps: the epsilon of RMSNorm.
    """

    vocab_size: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    rope_base: float
    rms_eps: float

    def __post_init__(self):
        if min(self.vocab_size, self.hidden, self.layers, self.heads, self.kv_heads, self.head_dim, self.ffn) < 1:
            raise ValueError(f"every size must be >= 1, got {self}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even (rotary pairs), got {self.head_dim}")
        if self.rope_base <= 1 or self.rms_eps < 0:
            raise ValueError(f"rope_base must be > 1 and rms_eps >= 0, got {self.rope_base}, {self.rms_eps}")

    @property
    def group_size(self) -> int:
        """Query heads per key/value head."""
        return self.heads // self.kv_heads


class LlamaParams(NamedTuple):
    """The weights, ``(out, in)`` layout, layers stacked first.

    Attributes:
      embed: ``(V, d)`` token embeddings, also the output projection (tied).
      attn_norm, ffn_norm: ``(L, d)`` RMSNorm gains.
      wq: ``(L, H d_head, d)``; wk, wv: ``(L, H_kv d_head, d)``; wo: ``(L, d, H d_head)``.
      w_gate, w_up: ``(L, F, d)``; w_down: ``(L, d, F)``.
      out_norm: ``(d,)`` the final RMSNorm gain.
    """

    embed: jax.Array
    attn_norm: jax.Array
    wq: jax.Array
    wk: jax.Array
    wv: jax.Array
    wo: jax.Array
    ffn_norm: jax.Array
    w_gate: jax.Array
    w_up: jax.Array
    w_down: jax.Array
    out_norm: jax.Array


class LlamaOutput(NamedTuple):
    """What :func:`llama_forward` returns for one sequence of ``n`` tokens.

    Attributes:
      logits: ``(n, V)`` next-token logits.
      attn_inputs: ``(L, n, d)`` the tokens each attention block sees (``RMSNorm(h) * g_attn``).
      head_outputs: ``(L, H, n, d_head)`` each query head's attention output before ``W^O``.
      log_partition: ``(L, H, n)`` ``log D'`` of each head at each position (over keys ``j <= t``).
      attention_entropy: ``(L, H, n)`` entropy (nats) of each head's attention distribution.
    """

    logits: jax.Array
    attn_inputs: jax.Array
    head_outputs: jax.Array
    log_partition: jax.Array
    attention_entropy: jax.Array


def config_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every field of :class:`LlamaParams` under ``config``."""
    c = config
    return {"embed": (c.vocab_size, c.hidden), "attn_norm": (c.layers, c.hidden),
            "wq": (c.layers, c.heads * c.head_dim, c.hidden), "wk": (c.layers, c.kv_heads * c.head_dim, c.hidden),
            "wv": (c.layers, c.kv_heads * c.head_dim, c.hidden), "wo": (c.layers, c.hidden, c.heads * c.head_dim),
            "ffn_norm": (c.layers, c.hidden), "w_gate": (c.layers, c.ffn, c.hidden),
            "w_up": (c.layers, c.ffn, c.hidden), "w_down": (c.layers, c.hidden, c.ffn), "out_norm": (c.hidden,)}


def validate_params(config: LlamaConfig, params: LlamaParams) -> LlamaParams:
    """Checks every shape against ``config`` and one floating dtype; raises ``ValueError`` naming the field."""
    if not isinstance(params, LlamaParams):
        raise ValueError(f"params must be LlamaParams, got {type(params).__name__}")
    expected = config_shapes(config)
    dtype = jnp.asarray(params.embed).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"params.embed must be floating, got {dtype}")
    for name, shape in expected.items():
        value = getattr(params, name)
        if tuple(np.shape(value)) != shape:
            raise ValueError(f"params.{name} must have shape {shape} for {config}, got {tuple(np.shape(value))}")
        if jnp.asarray(value).dtype != dtype:
            raise ValueError(f"params.{name} has dtype {jnp.asarray(value).dtype}, params.embed {dtype}: use one dtype")
    return LlamaParams(*(jnp.asarray(getattr(params, name)) for name in LlamaParams._fields))


def rope_angles(positions: jax.Array, head_dim: int, base: float, dtype) -> jax.Array:
    """``p * base^(-2i / d_head)`` for ``i < d_head / 2``: ``(n, d_head / 2)``."""
    inv_freq = jnp.asarray(base, dtype) ** (-jnp.arange(0, head_dim, 2, dtype=dtype) / head_dim)
    return positions.astype(dtype)[:, None] * inv_freq[None, :]


def apply_rope(x: jax.Array, positions: jax.Array, base: float) -> jax.Array:
    """``R(p) x`` for rows ``x (..., n, d_head)``: rotates the adjacent pairs ``(2i, 2i + 1)``."""
    angles = rope_angles(positions, x.shape[-1], base, x.dtype)
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    even, odd = x[..., 0::2], x[..., 1::2]
    rotated = jnp.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1)
    return rotated.reshape(x.shape)


def rms_norm(h: jax.Array, gain: jax.Array, eps: float) -> jax.Array:
    """``h / sqrt(mean(h^2) + eps) * gain`` over the last axis."""
    return h * jax.lax.rsqrt(jnp.mean(h * h, axis=-1, keepdims=True) + jnp.asarray(eps, h.dtype)) * gain


def _layer(config: LlamaConfig, h, layer):
    c = config
    n = h.shape[0]
    positions = jnp.arange(n)
    x = rms_norm(h, layer["attn_norm"], c.rms_eps)
    q = (x @ layer["wq"].T).reshape(n, c.heads, c.head_dim).transpose(1, 0, 2)
    k = (x @ layer["wk"].T).reshape(n, c.kv_heads, c.head_dim).transpose(1, 0, 2)
    v = (x @ layer["wv"].T).reshape(n, c.kv_heads, c.head_dim).transpose(1, 0, 2)
    q = apply_rope(q, positions, c.rope_base)
    k = apply_rope(k, positions, c.rope_base) / jnp.sqrt(jnp.asarray(c.head_dim, h.dtype))
    k = jnp.repeat(k, c.group_size, axis=0)          # query head h reads key/value head h // group_size
    v = jnp.repeat(v, c.group_size, axis=0)
    logits = q @ k.transpose(0, 2, 1)                # (H, n, n)
    causal = positions[:, None] >= positions[None, :]
    logits = jnp.where(causal, logits, -jnp.inf)
    log_partition = jax.nn.logsumexp(logits, axis=-1)
    log_probs = logits - log_partition[..., None]
    probs = jnp.exp(log_probs)
    entropy = -jnp.sum(jnp.where(causal, probs * log_probs, 0.0), axis=-1)
    heads = probs @ v                                 # (H, n, d_head)
    h = h + heads.transpose(1, 0, 2).reshape(n, c.heads * c.head_dim) @ layer["wo"].T
    y = rms_norm(h, layer["ffn_norm"], c.rms_eps)
    h = h + (jax.nn.silu(y @ layer["w_gate"].T) * (y @ layer["w_up"].T)) @ layer["w_down"].T
    return h, (x, heads, log_partition, entropy)


@counted_jit(static_argnums=0)
def _forward(config: LlamaConfig, params: LlamaParams, ids: jax.Array) -> LlamaOutput:
    h = params.embed[ids]
    stacked = {name: getattr(params, name) for name in
               ("attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w_gate", "w_up", "w_down")}
    h, (x, heads, log_partition, entropy) = jax.lax.scan(lambda carry, layer: _layer(config, carry, layer), h, stacked)
    logits = rms_norm(h, params.out_norm, config.rms_eps) @ params.embed.T
    return LlamaOutput(logits, x, heads, log_partition, entropy)


def llama_forward(config: LlamaConfig, params: LlamaParams, ids: ArrayLike) -> LlamaOutput:
    """The causal forward pass of one sequence (see the module docstring), compiled once per length.

    Args:
      config: :class:`LlamaConfig`.
      params: :class:`LlamaParams` in float32 or float64 (the computation keeps that dtype).
      ids: ``(n,)`` token ids in ``[0, V)``. Padding appended after the last real
        token does not change the outputs at the real positions (causal mask), so
        callers may pad to a few fixed lengths to reuse compilations.

    Returns:
      :class:`LlamaOutput`.
    """
    params = validate_params(config, params)
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.shape[0] < 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a non-empty (n,) integer array, got shape {ids.shape} and dtype {ids.dtype}")
    if ids.min() < 0 or ids.max() >= config.vocab_size:
        raise ValueError(f"ids must lie in [0, {config.vocab_size}), got min {ids.min()} and max {ids.max()}")
    return _forward(config, params, jnp.asarray(ids, jnp.int32))


__all__ = ["LlamaConfig", "LlamaOutput", "LlamaParams", "apply_rope", "config_shapes", "llama_forward",
           "rms_norm", "rope_angles", "validate_params"]
