"""Hypothesis strategies for building new checks (THEOREMS.md notation).

Shapes are drawn from small pools so that jit compiles a bounded number of
programs; arrays are generated from an integer seed through ``jax.random`` (so a
case is reproducible from its printed form and shrinks by shrinking numbers).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from iclkd_jax import AttentionWeights

#: (token_dim, key_dim, value_dim, n_demos, n_context, n_queries): a small pool, so a search compiles at most
#: len(SHAPES) programs per dtype. It covers d < d_k and d > d_k, one demonstration, and an empty context.
SHAPES = (
    (2, 2, 1, 1, 0, 2),
    (4, 2, 3, 4, 3, 2),
    (3, 4, 2, 16, 0, 3),
    (8, 4, 3, 16, 3, 2),
)


POOL_SIZE = 1024


@jax.jit
def _normal_pool(key):
    return jax.random.normal(key, (POOL_SIZE,), jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)


def standard_normal_pool(seed: int, size: int) -> np.ndarray:
    """``size`` standard normals from ``jax.random.key(seed)`` as float64 NumPy.

    One fixed-size draw per key (one compilation in all, whatever the shapes of a
    case); cases cut their arrays out of it, so a search over many shapes does not
    compile a sampler per shape.
    """
    if size > POOL_SIZE:
        chunks = [np.asarray(_normal_pool(jax.random.fold_in(jax.random.key(seed), i)))
                  for i in range(-(-size // POOL_SIZE))]
        return np.concatenate(chunks)[:size].astype(np.float64)
    return np.asarray(_normal_pool(jax.random.key(seed)))[:size].astype(np.float64)


@dataclasses.dataclass(frozen=True)
class AttentionCase:
    """One attention problem: weights, demonstrations, query context, queries (all from ``seed``)."""

    seed: int
    token_dim: int
    key_dim: int
    value_dim: int
    n_demos: int
    n_context: int
    n_queries: int
    scale: float
    dtype: str = "float64"

    def build(self) -> tuple[AttentionWeights, jax.Array, jax.Array, jax.Array]:
        """Weights ``N(0, scale^2/d)``, tokens ``N(0, I)``: all from one draw of ``jax.random.key(seed)``."""
        d, dk, dv = self.token_dim, self.key_dim, self.value_dim
        sizes = [dk * d, dk * d, dv * d, self.n_demos * d, self.n_context * d, self.n_queries * d]
        pool = standard_normal_pool(self.seed, sum(sizes))
        parts = np.split(pool, np.cumsum(sizes)[:-1])
        std = self.scale / np.sqrt(d)
        dtype = np.dtype(self.dtype)
        shapes = [(dk, d), (dk, d), (dv, d), (self.n_demos, d), (self.n_context, d), (self.n_queries, d)]
        scales = [std, std, std, 1.0, 1.0, 1.0]
        # device_put, not jnp.asarray: the latter stages (and compiles) a program per new shape
        arrays = [jax.device_put((p.reshape(s) * c).astype(dtype)) for p, s, c in zip(parts, shapes, scales)]
        weights = AttentionWeights(*arrays[:3])
        return weights, arrays[3], arrays[4], arrays[5]

    def describe(self) -> dict:
        return dataclasses.asdict(self)


def _case(seed, shape, scale, dtype) -> "AttentionCase":
    return AttentionCase(seed, *shape, scale=scale, dtype=dtype)


def attention_cases(*, dtypes=("float64",), max_scale: float = 6.0, shapes=SHAPES) -> st.SearchStrategy[AttentionCase]:
    """Attention problems with logits of order ``scale^2 * |x|^2`` (up to a few hundred at max_scale 6)."""
    return st.builds(
        _case,
        seed=st.integers(0, 2**31 - 1),
        shape=st.sampled_from(shapes),
        scale=st.floats(0.1, max_scale, allow_nan=False, allow_infinity=False),
        dtype=st.sampled_from(dtypes),
    )


def numpy_attention_split(weights: AttentionWeights, demos, context, queries):
    """An independent float64 NumPy softmax attention, split as in Theorem 3.1(a).

    Returns ``(demonstration part, context part, max |logit|)``: the two sums
    ``sum_j v_j exp(l_j - max l) / sum exp(l - max l)`` over the demonstrations and over the
    query context (max-shifted), the reference the 3.1 checks compare the library with.
    """
    wq, wk, wv = (np.asarray(w, np.float64) for w in weights)
    demos, context, queries = (np.asarray(a, np.float64) for a in (demos, context, queries))
    q = queries @ wq.T
    logits = np.concatenate([q @ (demos @ wk.T).T, q @ (context @ wk.T).T], axis=1)
    shift = logits.max(axis=1, keepdims=True)
    w = np.exp(logits - shift)
    w /= w.sum(axis=1, keepdims=True)
    n = demos.shape[0]
    return w[:, :n] @ (demos @ wv.T), w[:, n:] @ (context @ wv.T), np.abs(logits).max()
