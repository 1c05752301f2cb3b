"""Theorem 3.1(a) on the weights of a trained one-layer model (the experiments' theorem check)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.data import Prompts, flatten_queries
from experiments.models import attention_weights, make_tokens, predict
from experiments.training import Trained
from iclkd_jax.attention import kd_decomposition


def thm31_trained(trained: Trained, prompts: Prompts, max_prompts: int = 8) -> dict[str, Any]:
    """Theorem 3.1(a) on the trained weights of a one-layer model (docs/statements.md).

    For each head, ``iclkd_jax.kd_decomposition`` with ``X_D`` = the demonstration
    tokens, ``X_Q`` = the query token (``M = 1``) gives ``(W_0 + ΔW) phi(q)``; summed over
    heads it must equal the Flax model's prediction. Reported: the largest relative
    error ``|model - KD| / max(|model|, mean |y|)`` in float32 (the model's own
    precision) and, when x64 is enabled, with weights and tokens cast to float64
    against a float64 forward pass.
    """
    cfg = trained.config.model
    if cfg.residual:
        return {"applicable": False, "reason": "multi-layer/residual models: see the multi-layer experiment"}
    xd, yd, xq, yq = (np.asarray(a)[:max_prompts * prompts.y_query.shape[1]] for a in flatten_queries(prompts))
    tokens = make_tokens(cfg, jnp.asarray(xd), jnp.asarray(yd), jnp.asarray(xq))
    out: dict[str, Any] = {"applicable": True, "n_prompts": int(tokens.shape[0])}
    scale = max(float(np.mean(np.abs(yq))), 1e-12)
    dtypes = [jnp.float32] + ([jnp.float64] if jax.config.jax_enable_x64 else [])
    for dtype in dtypes:
        params = jax.tree.map(lambda a, dtype=dtype: jnp.asarray(a, dtype), trained.params)
        toks = jnp.asarray(tokens, dtype)
        model = np.asarray(predict(cfg, params, toks), np.float64)
        kd = np.zeros_like(model)
        log_eta, entropy = [], []
        for h in range(cfg.num_heads):
            w = attention_weights(params, 0, h)
            for i in range(toks.shape[0]):
                dec = kd_decomposition(w, toks[i, :-1], toks[i, -1:], toks[i, -1:])
                kd[i] += float(dec.output[0, 0])
                if h == 0:
                    log_eta.append(float(dec.log_eta[0]))
                    entropy.append(float(dec.attention_entropy[0]))
        rel = np.abs(model - kd) / np.maximum(np.abs(model), scale)
        name = jnp.dtype(dtype).name
        out[f"max_rel_error_{name}"] = float(rel.max())
        out["tolerance_float32"] = 1e-5
        out["tolerance_float64"] = 1e-12
        out["log_eta_mean"] = float(np.mean(log_eta))
        out["attention_entropy_mean"] = float(np.mean(entropy))
    out["holds"] = bool(out["max_rel_error_float32"] <= 1e-5 and out.get("max_rel_error_float64", 0.0) <= 1e-12)
    return out
