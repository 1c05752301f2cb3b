"""Hypothesis strategies for building new checks (docs/statements.md notation).

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
        arrays = [jax.device_put((p.reshape(s) * c).astype(dtype)) for p, s, c in zip(parts, shapes, scales, strict=False)]
        weights = AttentionWeights(*arrays[:3])
        return weights, arrays[3], arrays[4], arrays[5]

    def describe(self) -> dict:
        return dataclasses.asdict(self)


def _case(seed, shape, scale, dtype) -> AttentionCase:
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


# ----------------------------------------------------------------------------------------
# Batches: many cases of one shape per compiled call, drawn with jax.random.
# ----------------------------------------------------------------------------------------

#: cases per compiled call: every batch a check evaluates has exactly this many rows, so each
#: (shape, dtype) compiles once, and a single Hypothesis case is evaluated by tiling it.
CHUNK = 256
_ATTENTION_FIELDS = ("wq", "wk", "wv", "demos", "context", "queries")


def _attention_sizes(shape) -> list[tuple[int, ...]]:
    d, dk, dv, n, m, q = shape
    return [(dk, d), (dk, d), (dv, d), (n, d), (m, d), (q, d)]


#: normals per case drawn in one call (one compilation whatever the shape); shapes needing more are refused
_POOL_WIDTH = 256


@jax.jit
def _chunk_draw(key):
    normal_key, uniform_key = jax.random.split(key)
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    return (jax.random.normal(normal_key, (CHUNK, _POOL_WIDTH), dtype),
            jax.random.uniform(uniform_key, (CHUNK,), dtype))


@dataclasses.dataclass(frozen=True)
class AttentionBatch:
    """``CHUNK`` attention problems of one shape, as float64 NumPy arrays already rounded to ``dtype``.

    Attributes: ``wq, wk, wv (B, ., d)``, ``demos (B, N, d)``, ``context (B, M, d)``,
    ``queries (B, Q, d)``, ``scale (B,)``; ``shape`` is ``(d, d_k, d_v, N, M, Q)``.
    """

    shape: tuple[int, ...]
    dtype: str
    wq: np.ndarray
    wk: np.ndarray
    wv: np.ndarray
    demos: np.ndarray
    context: np.ndarray
    queries: np.ndarray
    scale: np.ndarray

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, f) for f in _ATTENTION_FIELDS)

    def device(self) -> tuple[jax.Array, ...]:
        """The arrays in the batch's dtype on the device (``device_put``: no staging program per shape)."""
        dtype = np.dtype(self.dtype)
        return tuple(jax.device_put(a.astype(dtype)) for a in self.arrays)

    def case(self, index: int, query: int | None = None) -> dict:
        """The exact float64 inputs of one case (``query``: keep only that query row, as ``query``)."""
        out = {f: getattr(self, f)[index].tolist() for f in _ATTENTION_FIELDS}
        if query is not None:
            out["query"] = out.pop("queries")[query]
        out["dtype_bits"] = float(np.dtype(self.dtype).itemsize * 8)
        return out


def draw_attention_batch(key: jax.Array, shape, *, dtype: str, min_scale: float = 0.1,
                         max_scale: float = 6.0) -> AttentionBatch:
    """``CHUNK`` problems of ``shape``: weights ``N(0, s^2/d)`` with ``s`` log-uniform in
    ``[min_scale, max_scale]`` per case, tokens ``N(0, I)``; every draw from ``key``."""
    if sum(int(np.prod(s)) for s in _attention_sizes(shape)) > _POOL_WIDTH:
        raise ValueError(f"shape {shape} needs more than {_POOL_WIDTH} normals per case")
    normal, uniform = (np.asarray(a, np.float64) for a in _chunk_draw(key))
    scale = min_scale * (max_scale / min_scale) ** uniform
    d = shape[0]
    parts, start = [], 0
    for i, s in enumerate(_attention_sizes(shape)):
        size = int(np.prod(s))
        block = normal[:, start:start + size].reshape((CHUNK,) + s)
        parts.append(block * (scale[:, None, None] / np.sqrt(d)) if i < 3 else block)
        start += size
    parts = [p.astype(dtype).astype(np.float64) for p in parts]
    return AttentionBatch(tuple(shape), dtype, *parts, scale=scale)


def tile_case(case: AttentionCase) -> AttentionBatch:
    """One Hypothesis case repeated ``CHUNK`` times (evaluated by the batch's compiled program)."""
    weights, demos, context, queries = case.build()
    arrays = [np.broadcast_to(np.asarray(a, np.float64), (CHUNK,) + tuple(np.shape(a)))
              for a in (*weights, demos, context, queries)]
    shape = (case.token_dim, case.key_dim, case.value_dim, case.n_demos, case.n_context, case.n_queries)
    return AttentionBatch(shape, case.dtype, *arrays, scale=np.full(CHUNK, case.scale))
