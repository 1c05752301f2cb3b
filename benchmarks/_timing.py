"""Timing and machine-limit helpers for ``benchmarks.perf``.

Every time is the minimum over repeats of a call that blocks until the result is
ready (``jax.block_until_ready``); the same estimator is applied to our functions and
to the references, so their ratios are comparable even on a loaded machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def best_time(fn: Callable[[], Any], *, repeats: int = 3, budget_s: float = 2.0) -> float:
    """Minimum wall time of ``fn()`` over up to ``repeats`` calls (fewer once ``budget_s`` is spent)."""
    best, spent = float("inf"), 0.0
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
        if spent > budget_s:
            break
    return best


def jax_time(fn: Callable[[], Any], *, repeats: int = 3, budget_s: float = 2.0) -> tuple[float, float]:
    """``(compile_s, warm_s)``: the first call minus a warm call (trace + XLA compile), then warm calls."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    warm = best_time(fn, repeats=repeats, budget_s=budget_s)
    return max(first - warm, 0.0), warm


def machine_rates(*, matmul_size: int = 1536, exp_count: int = 1 << 24, stream_bytes: int = 1 << 28) -> dict:
    """Measured peaks of this machine for the limit model, per dtype.

    * ``matmul_flops``: ``2 s^3 / t`` of a square ``s x s`` JAX matmul;
    * ``exp_per_s``: exponentials per second of ``sum(exp(c * iota))``, fused by XLA, so
      the exponentials are generated in registers (no memory traffic): the cost of
      the exp-and-accumulate that dominates a kernel sum;
    * ``read_bytes_per_s``: bytes per second of ``sum`` over a large float32 array
      (memory-bound work, e.g. the linear-time MMD from features).
    """
    rates: dict[str, dict[str, float]] = {}
    for dtype in ("float32", "float64"):
        a = jnp.ones((matmul_size, matmul_size), dtype) / matmul_size
        matmul = jax.jit(lambda m: m @ m)
        jax.block_until_ready(matmul(a))
        t_mm = best_time(lambda: matmul(a), repeats=3, budget_s=3.0)
        expsum = jax.jit(lambda c: jnp.sum(jnp.exp(jnp.arange(exp_count, dtype=dtype) * c)))
        c = jnp.asarray(-1.0 / exp_count, dtype)
        jax.block_until_ready(expsum(c))
        t_exp = best_time(lambda: expsum(c), repeats=3, budget_s=3.0)
        rates[dtype] = {"matmul_flops": 2.0 * matmul_size**3 / t_mm, "exp_per_s": exp_count / t_exp}
    big = jnp.ones((stream_bytes // 4,), jnp.float32)
    total = jax.jit(jnp.sum)
    jax.block_until_ready(total(big))
    t_read = best_time(lambda: total(big), repeats=3, budget_s=3.0)
    big = None  # free the buffer (a `del` would leave the lambda's name undefined)
    for dtype in rates:
        rates[dtype]["read_bytes_per_s"] = stream_bytes / t_read
    return rates


def limit_seconds(rates: dict, dtype: str, *, flops: float = 0.0, exps: float = 0.0, bytes_read: float = 0.0) -> float:
    """The machine-limit time: ``flops / F + exps / E + bytes / BW`` at the measured rates."""
    r = rates[dtype]
    return flops / r["matmul_flops"] + exps / r["exp_per_s"] + bytes_read / r["read_bytes_per_s"]
