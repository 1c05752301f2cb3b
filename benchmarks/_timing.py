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


def interleaved_best(fns: dict[str, Callable[[], Any]], *, rounds: int = 3, budget_s: float = 10.0,
                     more_rounds_s: float = 2.0, max_rounds: int = 30, settle_s: float = 0.0) -> dict[str, float]:
    """Minimum wall time of each ``fn`` over interleaved rounds (each round calls every ``fn`` once).

    Interleaving gives every implementation the same moments of a shared machine's load. At least
    ``rounds`` rounds; further rounds (up to ``max_rounds``) while the whole run has taken less than
    ``more_rounds_s``, so that quick calls get many chances at a quiet moment. A function that has
    already spent ``budget_s`` in total sits out the remaining rounds.

    A call right after a PyTorch one ran 10-15 % slower at n = 10^3 on this 2-core machine (PyTorch's
    OpenMP threads, like OpenBLAS's, keep spinning for a while after each parallel region), so a fixed
    order would hand that penalty to whichever function follows: each round calls the functions in
    its own order (a seeded shuffle: the same run gives the same orders), and the minimum over rounds
    keeps a round where the function did not follow a spinning peer. ``settle_s``: a pause before each
    call (0 by default: a 5 ms pause lets every pool fall asleep, after which even an empty jitted call
    took 150 us instead of 12 at load 6, the thread hand-off of a cold pool, which would swamp the
    sub-millisecond rows).
    """
    import random
    best = {name: float("inf") for name in fns}
    spent = dict.fromkeys(fns, 0.0)
    names = list(fns)
    orders = random.Random(0)
    started = time.perf_counter()
    round_index = 0
    while round_index < max(1, rounds) or (round_index < max_rounds and time.perf_counter() - started < more_rounds_s):
        if round_index:
            orders.shuffle(names)
        for name in names:
            fn = fns[name]
            if round_index and spent[name] > budget_s:
                continue
            if settle_s:
                time.sleep(settle_s)
            start = time.perf_counter()
            jax.block_until_ready(fn())
            elapsed = time.perf_counter() - start
            best[name], spent[name] = min(best[name], elapsed), spent[name] + elapsed
        round_index += 1
    return best


def jax_time(fn: Callable[[], Any], *, repeats: int = 3, budget_s: float = 2.0) -> tuple[float, float]:
    """``(compile_s, warm_s)``: the first call minus a warm call (trace + XLA compile), then warm calls."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    warm = best_time(fn, repeats=repeats, budget_s=budget_s)
    return max(first - warm, 0.0), warm


def _fastest(rate_fns: dict[str, Callable[[], float]]) -> tuple[float, str]:
    """The highest of several measured rates, and which formulation gave it."""
    rates = {name: fn() for name, fn in rate_fns.items()}
    best = max(rates, key=rates.get)
    return rates[best], best


def _peer_tile_rates(dtype: str, side: int, width: int, repeats: int, threads: int,
                     light: bool = False) -> dict[str, tuple[float, float]]:
    """``{peer: (matmul FLOP/s, exp/s)}`` of in-cache tiles in NumPy and PyTorch (those installed), ``threads`` wide.

    NumPy: ``threads`` Python threads, each on its own ``(side, side)`` buffer with BLAS pinned to
    one thread (ufuncs release the GIL), as the NumPy peer runs. PyTorch: ``torch.set_num_threads``.
    Each rate is the best of 5 timings (``light``: 3, within a second) of ``repeats`` tile products ``(side, w) x (w, side)`` or
    ``4 repeats`` exps of a ``(side / 2, side / 2)`` tile into another (both in cache).
    """
    import importlib.util
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    out = {}
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 0, (side, width)).astype(dtype)
    half = rng.uniform(-1, 0, (side // 2, side // 2)).astype(dtype)
    flops, exps = 2.0 * side * side * width * repeats, float(side * side * repeats)
    if importlib.util.find_spec("threadpoolctl") is not None:
        from threadpoolctl import threadpool_limits
        buffers = [np.empty((side, side), dtype) for _ in range(threads)]
        for buf in buffers:
            np.matmul(a, a.T, out=buf)

        def spread(work):
            with threadpool_limits(1), ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, buffers))

        def products(buf):
            for _ in range(-(-repeats // threads)):
                np.matmul(a, a.T, out=buf)

        def exponentials(buf):
            dst = buf[: side // 2, : side // 2]
            for _ in range(-(-4 * repeats // threads)):
                np.exp(half, out=dst)
        out["numpy"] = (flops / best_time(lambda: spread(products), repeats=3 if light else 5, budget_s=1.0 if light else 3.0),
                        exps / best_time(lambda: spread(exponentials), repeats=3 if light else 5, budget_s=1.0 if light else 3.0))
    if importlib.util.find_spec("torch") is not None:
        import torch
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            ta, th = torch.from_numpy(a.copy()), torch.from_numpy(half.copy())
            buf, dst = torch.empty((side, side), dtype=ta.dtype), torch.empty_like(th)

            def torch_products():
                for _ in range(repeats):
                    torch.mm(ta, ta.T, out=buf)

            def torch_exponentials():
                for _ in range(4 * repeats):
                    torch.exp(th, out=dst)
            out["torch"] = (flops / best_time(torch_products, repeats=3 if light else 5, budget_s=1.0 if light else 3.0),
                            exps / best_time(torch_exponentials, repeats=3 if light else 5, budget_s=1.0 if light else 3.0))
        finally:
            torch.set_num_threads(previous)
    return out


_REUSED: dict[tuple, Callable] = {}


def _reused(key: tuple, build: Callable[[], Callable]) -> Callable:
    """One jitted function per key for the whole process: rates measured after every row must not recompile."""
    if key not in _REUSED:
        _REUSED[key] = build()
    return _REUSED[key]


def machine_rates(*, matmul_size: int = 1536, exp_count: int = 1 << 24, stream_bytes: int = 1 << 28,
                  tile_rows: int = 2048, width: int = 64, peer_tile: int = 512, peer_repeats: int = 64,
                  peers: bool = True, light: bool = False) -> dict:
    """Measured peaks of this machine for the limit model, per dtype: what a fused kernel cannot beat.

    Each rate is the **highest** over a few formulations of the same work, by JAX or by a peer
    (NumPy, PyTorch), each timed as the minimum over repeats, so the limit is as fast as this
    machine was seen to go:

    * ``matmul_flops``: ``2 s^3 / t`` of a square ``s x s`` matmul, ``2 T^2 w / t`` of the
      ``(T, w) x (w, T)`` product of a kernel tile (``w = 64``, the benchmarks' d), and the same
      product for an **in-cache** tile (``T = 512``, repeated): in JAX (fused with its sum, in a
      ``fori_loop``), in NumPy and in PyTorch (:func:`_peer_tile_rates`). A full-size product
      writes its output to memory and is slower than tiles, so it is no floor on its own;
    * ``exp_per_s``: exponentials per second of an exp-and-sum fused by XLA: of
      ``exp(c * iota)`` generated in registers (no memory traffic; the iota is built in the
      dtype itself, since an int64 iota converted to float64 measures the conversion, not
      the exp), or of an in-cache ``(512, 512)`` tile; and in-place ``exp`` of an in-cache
      tile in NumPy and PyTorch;
    * ``read_bytes_per_s``: bytes per second of ``sum`` over a large float32 array
      (memory-bound work, e.g. the linear-time MMD from features), and ``read_rates``:
      ``{working set in bytes: bytes per second}`` of sums over arrays of several sizes
      (:data:`READ_SIZES`, in the caches, and the large one), the highest of JAX and NumPy,
      for :func:`read_rate`: a 5 MB input that sits in the last-level cache is read faster
      than DRAM allows, so a DRAM rate is no floor for it.

    The names of the winning formulations are kept under ``"how"``. ``light``: only the in-cache
    formulations (the ones that win on this machine), for the measurements between rows;
    its ``read_bytes_per_s`` is 0 (not measured: the highest over the run comes from a full one).
    """
    from benchmarks._perf_peers import cpu_threads
    rates: dict[str, dict] = {}
    for dtype in ("float32", "float64"):
        a = jnp.ones((matmul_size, matmul_size), dtype) / matmul_size
        t = jnp.ones((tile_rows, width), dtype) / width
        u = jax.random.uniform(jax.random.key(1), (peer_tile, width), dtype, -1.0, 0.0)
        square = _reused(("square", dtype), lambda: jax.jit(lambda m: m @ m))
        tile = _reused(("tile", dtype), lambda: jax.jit(lambda u: u @ u.T))
        in_cache_product = _reused(("in-cache product", dtype, peer_repeats), lambda: jax.jit(lambda u: jax.lax.fori_loop(
            0, peer_repeats, lambda i, acc: acc + jnp.sum(u @ (u * (1.0 + i * 1e-6).astype(dtype)).T),
            jnp.zeros((), dtype))))
        cols = max(exp_count // 1024, 1)
        # the flat index i * cols + j: an iota along one axis only is a broadcast, which XLA sinks
        # through exp and the sum (computing cols exps, not 1024 * cols)
        flat = lambda: (jax.lax.broadcasted_iota(dtype, (1024, cols), 0) * cols  # noqa: E731
                        + jax.lax.broadcasted_iota(dtype, (1024, cols), 1))
        iota_sum = _reused(("iota", dtype, cols), lambda: jax.jit(lambda c: jnp.sum(jnp.sum(jnp.exp(flat() * c), axis=1))))
        side = min(int(exp_count**0.5), 512)
        block = jax.random.uniform(jax.random.key(0), (side, side), dtype, -1.0, 0.0)
        repeats = max(exp_count // (side * side), 1)
        in_cache = _reused(("in-cache exp", dtype, repeats), lambda: jax.jit(lambda b: jax.lax.fori_loop(
            0, repeats, lambda i, acc: acc + jnp.sum(jnp.sum(jnp.exp(b * (1.0 + i * 1e-6).astype(dtype)), axis=1)),
            jnp.zeros((), dtype))))
        c = jnp.asarray(-1.0 / cols, dtype)

        def rate(fn, arg, work):
            jax.block_until_ready(fn(arg))
            return work / best_time(lambda: fn(arg), repeats=3 if light else 5, budget_s=1.0 if light else 3.0)

        peer = _peer_tile_rates(dtype, peer_tile, width, peer_repeats, cpu_threads(), light) if peers else {}
        full = {} if light else {"square": lambda: rate(square, a, 2.0 * matmul_size**3),
                                 "tile": lambda: rate(tile, t, 2.0 * tile_rows**2 * width)}
        flops, flops_how = _fastest({**full,
                                     "in-cache tile (jax)": lambda: rate(in_cache_product, u,
                                                                          2.0 * peer_tile**2 * width * peer_repeats),
                                     **{f"in-cache tile ({name})": (lambda r=r: r[0]) for name, r in peer.items()}})
        exps, exps_how = _fastest({**({} if light else {"iota": lambda: rate(iota_sum, c, 1024.0 * cols)}),
                                   "in-cache tile (jax)": lambda: rate(in_cache, block, float(repeats * side * side)),
                                   **{f"in-cache tile ({name})": (lambda r=r: r[1]) for name, r in peer.items()}})
        rates[dtype] = {"matmul_flops": flops, "exp_per_s": exps, "how": {"matmul": flops_how, "exp": exps_how}}
    read = _read_rates([size for size in READ_SIZES if size < stream_bytes], light)
    if light:
        for dtype in rates:
            rates[dtype]["read_bytes_per_s"] = 0.0
            rates[dtype]["read_rates"] = dict(read)
        return rates
    big = jnp.ones((stream_bytes // 4,), jnp.float32)
    total = jax.jit(jnp.sum)
    jax.block_until_ready(total(big))
    t_read = best_time(lambda: total(big), repeats=3, budget_s=3.0)
    read[stream_bytes] = max(read.get(stream_bytes, 0.0), stream_bytes / t_read)
    for dtype in rates:
        rates[dtype]["read_bytes_per_s"] = stream_bytes / t_read
        rates[dtype]["read_rates"] = dict(read)
    return rates


#: working sets (bytes) of the in-cache read rates: one core's L2 and a part of the last-level cache
READ_SIZES = (1 << 18, 1 << 22)


def _read_rates(sizes, light: bool) -> dict[int, float]:
    """``{bytes: bytes per second}``: a float32 array of each size summed ``repeats`` times in cache, by JAX and by NumPy.

    JAX: a ``fori_loop`` of sums, each of the array times a loop-dependent factor (so that XLA
    cannot hoist the sum out of the loop), on every core; NumPy: ``np.sum`` in a loop, one core.
    The highest of the two.
    """
    import numpy as np
    out = {}
    for size in sizes:
        count = size // 4
        repeats = max((1 << 26) // size, 1)
        array = jnp.ones((count,), jnp.float32)
        summed = _reused(("read", size, repeats), lambda repeats=repeats: jax.jit(lambda a: jax.lax.fori_loop(
            0, repeats, lambda i, acc: acc + jnp.sum(a * (1.0 + i * 1e-7)), jnp.zeros((), jnp.float32))))
        jax.block_until_ready(summed(array))
        host = np.ones(count, np.float32)

        def numpy_sums(host=host, repeats=repeats):
            for _ in range(repeats):
                host.sum()
        work = float(size) * repeats
        timing = {"repeats": 3 if light else 5, "budget_s": 1.0 if light else 2.0}
        out[size] = max(work / best_time(lambda summed=summed, array=array: summed(array), **timing),
                        work / best_time(numpy_sums, **timing))
    return out


def read_rate(rates: dict, dtype: str, bytes_read: float) -> float:
    """The read rate of a working set of ``bytes_read`` bytes, at least as fast as any measurement allows.

    Reading gets slower as the working set leaves each cache, so a smaller working set is read at
    least as fast as any larger one: each measured size gets the highest rate measured at it or
    above (a measurement taken in a busy moment cannot make a smaller set look slower), and a
    working set gets the rate of the largest measured size not larger than itself (below the
    smallest, that one's). Rates without ``read_rates`` (older reports): ``read_bytes_per_s``.
    """
    r = rates[dtype]
    measured = sorted((int(size), rate) for size, rate in r.get("read_rates", {}).items() if rate > 0)
    if not measured:
        return r["read_bytes_per_s"]
    below = [i for i, (size, _) in enumerate(measured) if size <= bytes_read]
    start = below[-1] if below else 0
    return max(rate for _, rate in measured[start:])


def fastest_rates(*measured: dict) -> dict:
    """Per dtype and quantity, the highest of several :func:`machine_rates` measurements (e.g. start and end of a run).

    On a shared machine a rate measured in a busy moment is too low, which would let a
    workload timed in a quiet moment exceed "100 % of the limit"; keeping the highest makes the limit tighter.
    """
    out: dict[str, dict] = {}
    for dtype in measured[0]:
        out[dtype] = {"how": {}}
        for quantity, how in (("matmul_flops", "matmul"), ("exp_per_s", "exp"), ("read_bytes_per_s", None)):
            best = max(measured, key=lambda r: r[dtype][quantity])
            out[dtype][quantity] = best[dtype][quantity]
            if how:
                out[dtype]["how"][how] = best[dtype]["how"][how]
        read: dict[int, float] = {}
        for r in measured:
            for size, rate in r[dtype].get("read_rates", {}).items():
                read[int(size)] = max(read.get(int(size), 0.0), rate)
        out[dtype]["read_rates"] = read
    return out


def limit_seconds(rates: dict, dtype: str, *, flops: float = 0.0, exps: float = 0.0, bytes_read: float = 0.0) -> float:
    """The machine-limit time: ``flops / F + exps / E + bytes / BW`` at the measured rates (``BW`` by :func:`read_rate`)."""
    r = rates[dtype]
    return (flops / r["matmul_flops"] + exps / r["exp_per_s"]
            + (bytes_read / read_rate(rates, dtype, bytes_read) if bytes_read else 0.0))
