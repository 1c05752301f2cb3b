"""The peers of ``iclkd bench perf``: MMD^2 written as well as we can in NumPy, PyTorch and KeOps.

Every peer computes the same statistic as ``iclkd_jax.mmd2`` in the **same dtype** as ours,

    MMD_b^2 = S_xx / n^2 + S_yy / m^2 - 2 S_xy / (n m),   S_ab = sum_ij k(a_i, b_j)

(the unbiased form drops the diagonals of S_xx and S_yy and divides by n (n - 1), m (m - 1)),
over square tiles of a Gram matrix, never the whole matrix, with the symmetry used: a
within-sample sum visits the tiles ``(i, j)`` with ``j >= i`` only and counts the
off-diagonal ones twice. Each tile is one matmul whose output is already the kernel's
exponent, thanks to augmented rows:

* RBF with ``s = (x - c) / h`` and ``q = |s|^2 / 2``: ``[s, -q, -1] . [s', 1, q'] = -|s - s'|^2 / 2``;
* Laplace with ``s = x - c``: ``[-2 s, |s|^2, 1] . [s', 1, |s'|^2] = |s - s'|^2``;
* exp: ``x . x'``; product: ``x . x'`` and ``(W^K x) . (W^K x')`` (two matmuls);

then the elementwise work **in place** in the tile's buffer (``exp`` and, for Laplace,
``max(., 0)``, ``sqrt``, scale), and a sum (for the product kernel the sum of the
elementwise product of two tiles, a BLAS ``dot`` that reads both once). Buffers are reused
from tile to tile (a fresh 1 MiB array per tile would page-fault). The linear kernel's
sums factor, ``S_ab = (sum_i a_i) . (sum_j b_j)``, and every peer uses that closed form.

* ``numpy``: tiles of 512 rows spread over a thread pool of as many threads as JAX's
  devices have cores (NumPy's ufuncs are single-threaded but release the GIL), BLAS
  pinned to one thread per tile so the two levels do not oversubscribe the cores.
* ``torch``: PyTorch CPU, tiles of 2048 rows, ``torch.set_num_threads`` set to JAX's
  thread count for the call (ATen parallelises each in-place op and the matmul).
* ``keops``: pykeops' lazy tensors (``(LazyTensor).sum``), when pykeops is installed.

The exponential kernels are summed **without a max shift**: the peers overflow past logits of
~88 (float32) or ~709 (float64) where ``iclkd_jax.mmd2`` does not, so the benchmark compares
them at logits of at most 50 (and says so).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np


class KernelSpec(NamedTuple):
    """A kernel as the peers see it: its kind and NumPy parameters (``bandwidth`` or ``wk``)."""

    kind: str
    bandwidth: float | None = None
    wk: np.ndarray | None = None


def cpu_threads() -> int:
    """The threads XLA's CPU client uses for one computation: one per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _augmented(spec: KernelSpec, a: np.ndarray, centre: np.ndarray, left: bool):
    """Rows whose inner products are the kernel's exponent (see the module docstring), in ``a``'s dtype."""
    dtype = a.dtype
    if spec.kind == "rbf":
        s = (a - centre) / dtype.type(spec.bandwidth)
        q = 0.5 * np.einsum("ij,ij->i", s, s)[:, None]
        one = np.ones_like(q)
        return np.ascontiguousarray(np.hstack([s, -q, -one] if left else [s, one, q]))
    if spec.kind == "laplace":
        s = a - centre
        q = np.einsum("ij,ij->i", s, s)[:, None]
        one = np.ones_like(q)
        return np.ascontiguousarray(np.hstack([-2 * s, q, one] if left else [s, one, q]))
    return np.ascontiguousarray(a)


def _linear_mmd2(sum_x, sum_y, diag_x, diag_y, n, m, unbiased):
    """MMD^2 of the linear kernel from the sample sums and ``sum_i |x_i|^2`` (closed form)."""
    if not unbiased:
        diff = sum_x / n - sum_y / m
        return float(diff @ diff)
    return float((sum_x @ sum_x - diag_x) / (n * (n - 1)) + (sum_y @ sum_y - diag_y) / (m * (m - 1))
                 - 2 * (sum_x @ sum_y) / (n * m))


def _combine(sxx, syy, sxy, n, m, unbiased):
    if unbiased:
        return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)
    return sxx / n**2 + syy / m**2 - 2 * sxy / (n * m)


def _tile_pairs(n_a: int, n_b: int, tile: int, symmetric: bool):
    """``(i0, i1, j0, j1, weight)`` of every tile a sum visits (symmetric: ``j >= i``, off-diagonal weight 2)."""
    rows = range(0, n_a, tile)
    for i0 in rows:
        for j0 in (range(i0, n_b, tile) if symmetric else range(0, n_b, tile)):
            yield i0, min(i0 + tile, n_a), j0, min(j0 + tile, n_b), (2.0 if symmetric and j0 != i0 else 1.0)


# ------------------------------------------------------------------ NumPy


def _numpy_tile(spec: KernelSpec, buffers, a, b, ka, kb, diagonal_tile: bool, exclude_diagonal: bool) -> float:
    """The sum of one tile ``k(a_i, b_j)``, every elementwise step in place in a reused buffer."""
    shape = (a.shape[0], b.shape[0])
    key = (shape, a.dtype.str)
    if key not in buffers:
        buffers[key] = (np.empty(shape, a.dtype), np.empty(shape, a.dtype))
    out, other = buffers[key]
    np.matmul(a, b.T, out=out)
    if spec.kind == "laplace":
        if diagonal_tile:  # the expansion leaves ~eps |s|^2 where the distance is exactly 0 (sqrt would amplify it)
            np.fill_diagonal(out, 0)
        np.maximum(out, 0, out=out)
        np.sqrt(out, out=out)
        out *= a.dtype.type(-1.0 / spec.bandwidth)
    if spec.kind == "product":
        np.matmul(ka, kb.T, out=other)
        np.exp(other, out=other)
        if exclude_diagonal:
            np.fill_diagonal(out, 0)
        return float(np.vdot(out, other))
    np.exp(out, out=out)
    if exclude_diagonal:
        np.fill_diagonal(out, 0)
    return float(out.sum(dtype=a.dtype))


def numpy_mmd2(spec: KernelSpec, x: np.ndarray, y: np.ndarray, unbiased: bool, *, tile: int = 512,
               threads: int | None = None) -> float:
    """MMD^2 in NumPy over symmetric tiles of ``tile`` rows, the tiles spread over ``threads`` threads."""
    from threadpoolctl import threadpool_limits

    n, m = len(x), len(y)
    if spec.kind == "linear":
        return _linear_mmd2(x.sum(0), y.sum(0), np.einsum("ij,ij->", x, x), np.einsum("ij,ij->", y, y), n, m, unbiased)
    centre = y.mean(axis=0)
    left = {"x": _augmented(spec, x, centre, True), "y": _augmented(spec, y, centre, True)}
    right = {"x": _augmented(spec, x, centre, False), "y": _augmented(spec, y, centre, False)}
    keys = {}
    if spec.kind == "product":
        wk = spec.wk.astype(x.dtype)
        keys = {"x": np.ascontiguousarray(x @ wk.T), "y": np.ascontiguousarray(y @ wk.T)}
    local = threading.local()

    def one(job):
        a, b, i0, i1, j0, j1, weight, symmetric = job
        buffers = local.__dict__.setdefault("buffers", {})
        ka = keys[a][i0:i1] if keys else None
        kb = keys[b][j0:j1] if keys else None
        return weight * _numpy_tile(spec, buffers, left[a][i0:i1], right[b][j0:j1], ka, kb,
                                     symmetric and i0 == j0, unbiased and symmetric and i0 == j0)

    sums = {}
    jobs = []
    for name, (a, b, symmetric) in {"xx": ("x", "x", True), "yy": ("y", "y", True), "xy": ("x", "y", False)}.items():
        for i0, i1, j0, j1, weight in _tile_pairs(len(left[a]), len(right[b]), tile, symmetric):
            jobs.append((name, (a, b, i0, i1, j0, j1, weight, symmetric)))
    with threadpool_limits(1), ThreadPoolExecutor(threads or cpu_threads()) as pool:
        for (name, _), value in zip(jobs, pool.map(one, [job for _, job in jobs]), strict=False):
            sums[name] = sums.get(name, 0.0) + value
    return _combine(sums["xx"], sums["yy"], sums["xy"], n, m, unbiased)


# ------------------------------------------------------------------ PyTorch


def torch_mmd2(spec: KernelSpec, x: np.ndarray, y: np.ndarray, unbiased: bool, *, tile: int = 2048,
               threads: int | None = None) -> float:
    """MMD^2 in PyTorch (CPU) over symmetric tiles of ``tile`` rows, with ``threads`` intra-op threads."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads or cpu_threads())
    try:
        with torch.no_grad():
            return _torch_mmd2(torch, spec, x, y, unbiased, tile)
    finally:
        torch.set_num_threads(previous)


def _torch_mmd2(torch, spec, x, y, unbiased, tile):
    n, m = len(x), len(y)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    if spec.kind == "linear":
        sx, sy = tx.sum(0), ty.sum(0)
        return _linear_mmd2(sx.numpy(), sy.numpy(), float(torch.sum(tx * tx)), float(torch.sum(ty * ty)), n, m, unbiased)
    centre = y.mean(axis=0)
    left = {k: torch.from_numpy(_augmented(spec, a, centre, True)) for k, a in (("x", x), ("y", y))}
    right = {k: torch.from_numpy(_augmented(spec, a, centre, False)) for k, a in (("x", x), ("y", y))}
    keys = {}
    if spec.kind == "product":
        wk = torch.from_numpy(spec.wk.astype(x.dtype))
        keys = {"x": tx @ wk.T, "y": ty @ wk.T}
    buffers = {}
    sums = {}
    for name, (a, b, symmetric) in {"xx": ("x", "x", True), "yy": ("y", "y", True), "xy": ("x", "y", False)}.items():
        total = 0.0
        for i0, i1, j0, j1, weight in _tile_pairs(len(left[a]), len(right[b]), tile, symmetric):
            shape = (i1 - i0, j1 - j0)
            if shape not in buffers:
                buffers[shape] = (torch.empty(shape, dtype=tx.dtype), torch.empty(shape, dtype=tx.dtype))
            out, other = buffers[shape]
            torch.mm(left[a][i0:i1], right[b][j0:j1].T, out=out)
            if spec.kind == "laplace":
                if symmetric and i0 == j0:  # exact zero distances on the diagonal (see the NumPy peer)
                    out.fill_diagonal_(0)
                out.clamp_min_(0).sqrt_().mul_(-1.0 / spec.bandwidth)
            if spec.kind == "product":
                torch.mm(keys[a][i0:i1], keys[b][j0:j1].T, out=other).exp_()
            else:
                out.exp_()
            if unbiased and symmetric and i0 == j0:
                out.fill_diagonal_(0)
            value = torch.dot(out.view(-1), other.view(-1)) if spec.kind == "product" else out.sum()
            total += weight * float(value)
        sums[name] = total
    return _combine(sums["xx"], sums["yy"], sums["xy"], n, m, unbiased)


# ------------------------------------------------------------------ KeOps


def keops_mmd2(spec: KernelSpec, x: np.ndarray, y: np.ndarray, unbiased: bool) -> float:
    """MMD^2 with pykeops' lazy tensors (no tiles to choose: KeOps reduces on the fly)."""
    from pykeops.numpy import LazyTensor

    n, m = len(x), len(y)
    if spec.kind == "linear":
        return _linear_mmd2(x.sum(0), y.sum(0), np.einsum("ij,ij->", x, x), np.einsum("ij,ij->", y, y), n, m, unbiased)
    centre = y.mean(axis=0)

    def kernel_sum(a, b, diagonal):
        a_i = LazyTensor(np.ascontiguousarray(a - centre)[:, None, :])
        b_j = LazyTensor(np.ascontiguousarray(b - centre)[None, :, :])
        if spec.kind == "rbf":
            k = (-a_i.sqdist(b_j) / (2 * spec.bandwidth**2)).exp()
        elif spec.kind == "laplace":
            k = (-a_i.sqdist(b_j).sqrt() / spec.bandwidth).exp()
        elif spec.kind == "exp":
            k = LazyTensor(a[:, None, :]) | LazyTensor(b[None, :, :])
            k = k.exp()
        else:
            wk = spec.wk.astype(a.dtype)
            k = ((LazyTensor(a[:, None, :]) | LazyTensor(b[None, :, :]))
                 * (LazyTensor(np.ascontiguousarray(a @ wk.T)[:, None, :])
                    | LazyTensor(np.ascontiguousarray(b @ wk.T)[None, :, :])).exp())
        total = float(k.sum(axis=1).sum())
        return total - diagonal if unbiased else total

    def diagonal(a):
        if spec.kind in ("rbf", "laplace"):
            return float(len(a))
        if spec.kind == "exp":
            return float(np.exp(np.einsum("ij,ij->i", a, a)).sum())
        ka = a @ spec.wk.astype(a.dtype).T
        return float((np.einsum("ij,ij->i", a, a) * np.exp(np.einsum("ij,ij->i", ka, ka))).sum())

    return _combine(kernel_sum(x, x, diagonal(x)), kernel_sum(y, y, diagonal(y)), kernel_sum(x, y, 0.0), n, m, unbiased)


#: the peers, in the order the report lists them, with the module each needs
PEERS: dict[str, tuple[Callable, str | None]] = {
    "numpy": (numpy_mmd2, "threadpoolctl"),
    "torch": (torch_mmd2, "torch"),
    "keops": (keops_mmd2, "pykeops"),
}


def installed_peers() -> tuple[dict[str, Callable], dict[str, str]]:
    """``(peers that can run here, {skipped peer: why})``."""
    ready, skipped = {}, {}
    for name, (fn, module) in PEERS.items():
        if module is None or importlib.util.find_spec(module) is not None:
            ready[name] = fn
        else:
            skipped[name] = f"{module} is not installed (pip install 'iclkd-jax[peers]')"
    return ready, skipped
