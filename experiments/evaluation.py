"""Evaluating trained in-context models: query predictions, per-prompt errors, error rates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments.data import Prompts, flatten_queries
from experiments.models import make_tokens, predict
from experiments.training import Trained

_predict_jit = jax.jit(predict, static_argnums=0)


def predictions(trained: Trained, prompts: Prompts, batch: int = 1024) -> np.ndarray:
    """Query predictions ``(P, Q)`` of a trained model.

    Rows are padded to a multiple of ``batch`` so that one compiled shape serves every call.
    """
    cfg = trained.config.model
    xd, yd, xq, _ = flatten_queries(prompts)
    total = xd.shape[0]
    pad = -total % batch
    if pad:
        xd, yd, xq = (jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)]) for a in (xd, yd, xq))
    out = [np.asarray(_predict_jit(cfg, trained.params, make_tokens(cfg, xd[i:i + batch], yd[i:i + batch],
                                                                     xq[i:i + batch])))
           for i in range(0, xd.shape[0], batch)]
    return np.concatenate(out)[:total].reshape(prompts.y_query.shape)


def prompt_errors(trained: Trained, prompts: Prompts) -> np.ndarray:
    """Per-prompt in-context squared error, averaged over the prompt's queries, ``(P,)``."""
    return np.mean((predictions(trained, prompts) - np.asarray(prompts.y_query)) ** 2, axis=1)


def error_rate(trained: Trained, prompts: Prompts) -> float:
    """Classification error rate of ``sign(prediction)``."""
    return float(np.mean(np.sign(predictions(trained, prompts)) != np.asarray(prompts.y_query)))
