"""Fast PRNG keys for large batched draws (every draw still from an explicit ``jax.random`` key)."""

from __future__ import annotations

import jax
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
