"""Real models with a planted forward-pass bug, for the tests of the forward validation.

Each returns a copy of a loaded model (the original is untouched) whose forward pass computes a
different function than the real model's; the weights-level bugs are exact equivalents of the code bugs
they stand for (BERT's scores without ``1/sqrt(d_k)`` are the scores with ``W_q, b_q`` scaled by ``sqrt(d_k)``).
"""

import dataclasses
import functools

import jax
import numpy as np

from iclkd_jax import llama
from verification.real_models import smollm2


def smollm2_gate_up_swapped(model):
    """SwiGLU computed as ``silu(W_up y) * (W_gate y)`` (the converted weights are swapped, not converted again)."""
    arrays = dict(model.arrays, w_gate=model.arrays["w_up"], w_up=model.arrays["w_gate"])
    params = {dtype: p._replace(w_gate=p.w_up, w_up=p.w_gate) for dtype, p in model._params.items()}
    return dataclasses.replace(model, arrays=arrays, _params=params)


def smollm2_rope_base(model, base=1e4):
    """Rotary angles ``p * base^(-2i/d)`` with Llama-2's base 1e4 instead of SmolLM2's 1e5."""
    return dataclasses.replace(model, config=dataclasses.replace(model.config, rope_base=base),
                               _params=dict(model._params))


@functools.partial(jax.jit, static_argnums=0)
def _logits_without_final_norm(config, params, ids):
    stacked = {name: getattr(params, name) for name in llama.LlamaParams._fields if name not in ("embed", "out_norm")}
    h, _ = jax.lax.scan(lambda carry, layer: llama._layer(config, carry, layer), params.embed[ids], stacked)
    return h @ params.embed.T


def smollm2_final_norm_dropped(model):
    """Logits ``h_L E^T`` from the last residual state, without the final RMSNorm (every other output unchanged)."""
    base = type(model)

    class FinalNormDropped(base):
        def forward(self, ids, dtype="float32"):
            out = super().forward(ids, dtype)
            n = len(ids)
            padded = np.zeros(-(-n // smollm2.LENGTH_BUCKET) * smollm2.LENGTH_BUCKET, np.int32)  # one compilation
            padded[:n] = ids
            return out._replace(logits=_logits_without_final_norm(self.config, self.params(dtype), padded)[:n])

    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.init}
    return FinalNormDropped(**dict(fields, _params=dict(model._params)))


def minilm_scale_dropped(model):
    """BERT's attention scores ``q . k`` instead of ``q . k / sqrt(d_k)`` in every layer."""
    s = np.sqrt(model.head_dim)
    encoder = tuple(dict(w, wq=w["wq"] * s, bq=w["bq"] * s) for w in model.encoder)
    return dataclasses.replace(model, encoder=encoder)


def minilm_layers_reversed(model):
    """The 6 encoder layers applied in reverse order."""
    return dataclasses.replace(model, encoder=tuple(reversed(model.encoder)))
