"""Fast PRNG keys for large batched draws (every draw still from an explicit ``jax.random`` key)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def fast_key(key, *path: int):
    """An ``rbg`` key derived from ``key`` folded with ``path`` (deterministic in the seed and the path).

    XLA's RngBitGenerator compiles in ~0.1 s whatever the draw size, where threefry's counter arrays of
    10^4-10^5 elements take seconds to compile on CPU; the checks draw tens of thousands of values at once.
    """
    for p in path:
        key = jax.random.fold_in(key, p)
    data = np.asarray(jax.random.key_data(key)).ravel()
    return jax.random.key((int(data[0]) << 31) ^ int(data[-1]), impl="rbg")


def numpy_rng(key) -> np.random.Generator:
    """A NumPy generator seeded from a JAX key, for host-side draws (subsamples, permutations) that must follow
    the run's key: the same key gives the same generator, another key an independent one."""
    return np.random.default_rng(np.asarray(jax.random.bits(key, (4,), jnp.uint32)).tolist())
