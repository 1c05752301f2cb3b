"""``iclkd bench perf [--quick] [--json PATH] [--markdown PATH]``: speed and scale of the hot paths.

For each workload: our time (jit-compiled and warm; the first call's extra time is
reported separately as ``compile_s``, with JAX's persistent compilation cache off so
that it is a real compile), a NumPy float64 reference, a scikit-learn pairwise-kernel
reference where one applies, and the fraction of this machine's limit reached.

The limit model (measured in the same run, per dtype, by ``_timing.machine_rates``):

    limit_s = matmul_flops / F  +  exps / E  +  bytes_read / BW

with ``F`` the FLOP/s of a large square matmul, ``E`` the exponentials per second of a
fused exp-and-sum, ``BW`` the read bandwidth of a large sum. For a kernel sum the
FLOPs are ``2 d`` per kernel entry (the ``x.y`` of the squared distance) and one exp
per entry, counting a symmetric Gram matrix **once** (``n^2 / 2`` entries), so an
RBF MMD^2 at ``n = m`` costs ``2 n^2`` entries: ``4 d n^2`` FLOPs and ``2 n^2`` exps.
``limit_fraction = limit_s / ours_s``: 1 means as fast as the measured peaks allow.
All timings are minima over repeats; on a shared, loaded machine the absolute
seconds are inflated, so read the ratios (all measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._timing import best_time, jax_time, limit_seconds, machine_rates
from verification.command import Parser, listing, output_file, standalone
from verification.outputs import DEFAULT_OUTPUT_ROOT, write_atomic, write_json

SCHEMA_KEYS = ("name", "n", "d", "dtype", "ours_s", "compile_s", "numpy_s", "sklearn_s", "limit_fraction")
BLOCK = 512

SIZES = {
    # tiny: the test-suite run (seconds); quick: < ~2 min; full: the issue's sizes (long on a CPU).
    "tiny": dict(attention=[256], gram=[256], mmd_dense=[64], mmd_blocked=[200], features=10_000, perm=(64, 20),
                 ball=64, rademacher=(128, 256), memory=[2_000], memory_baseline=False, large=1_000_000),
    "quick": dict(attention=[1_000, 10_000], gram=[1_000], mmd_dense=[1_000], mmd_blocked=[10_000],
                  features=10_000_000, perm=(2_000, 1_000), ball=512, rademacher=(2_000, 4_096),
                  memory=[10_000, 30_000], memory_baseline=True, large=1_000_000),
    "full": dict(attention=[1_000, 10_000, 100_000], gram=[1_000, 10_000], mmd_dense=[1_000, 10_000],
                 mmd_blocked=[10_000, 100_000], features=10_000_000, perm=(4_000, 1_000), ball=1_024,
                 rademacher=(4_000, 4_096), memory=[100_000, 1_000_000], memory_baseline=True, large=1_000_000),
}


# ----------------------------------------------------------------------------------- NumPy references

def _np_sqdist(a, b):
    centre = b.mean(axis=0)
    a, b = a - centre, b - centre
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def _np_kernel_sum(gram_fn, a, b, exclude_diagonal, chunk=2048):
    """sum_ij k(a_i, b_j) in float64, row chunks of ``chunk`` (a fair, memory-bounded NumPy code)."""
    total = 0.0
    for start in range(0, a.shape[0], chunk):
        block = gram_fn(a[start:start + chunk], b)
        if exclude_diagonal:
            rows = np.arange(block.shape[0])
            block[rows, start + rows] = 0.0
        total += block.sum()
    return total


def _np_mmd2(gram_fn, x, y, unbiased):
    n, m = len(x), len(y)
    sxx = _np_kernel_sum(gram_fn, x, x, unbiased)
    syy = _np_kernel_sum(gram_fn, y, y, unbiased)
    sxy = _np_kernel_sum(gram_fn, x, y, False)
    if unbiased:
        return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)
    return sxx / n**2 + syy / m**2 - 2 * sxy / (n * m)


def _np_rbf(bandwidth):
    return lambda a, b: np.exp(-_np_sqdist(a, b) / (2 * bandwidth**2))


def _np_product(wk):
    return lambda a, b: (a @ b.T) * np.exp((a @ wk.T) @ (b @ wk.T).T)


def _sk_mmd2(x, y, bandwidth, unbiased):
    from sklearn.metrics.pairwise import rbf_kernel
    gamma = 1.0 / (2 * bandwidth**2)
    n, m = len(x), len(y)
    kxx, kyy, kxy = rbf_kernel(x, x, gamma=gamma), rbf_kernel(y, y, gamma=gamma), rbf_kernel(x, y, gamma=gamma)
    if unbiased:
        return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                - 2 * kxy.sum() / (n * m))
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


def _np_kd(wq, wk, wv, demos, queries):
    q = queries @ wq.T
    logits = q @ (demos @ wk.T).T
    top = logits.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    weights = np.exp(logits - log_z[:, None])
    out = weights @ (demos @ wv.T)
    entropy = -(weights * (logits - log_z[:, None])).sum(axis=1)
    return out, log_z, entropy


def _np_permutation(gram, n, labels):
    m = gram.shape[0] - n
    coeffs = labels / n - (1 - labels) / m
    stats = ((coeffs @ gram) * coeffs).sum(axis=1)
    return stats[0], (1 + np.sum(stats[1:] >= stats[0])) / len(stats)


def _np_ball(a, b, radius):
    lam, vec = np.linalg.eigh(a)
    beta = vec.T @ b
    lo, hi = max(lam[-1], 0.0), max(lam[-1], 0.0) + np.linalg.norm(b) / radius + 1.0
    for _ in range(100):  # bisection on the secular equation ||(mu - lam)^-1 beta|| = R
        mu = 0.5 * (lo + hi)
        if np.linalg.norm(beta / (mu - lam)) > radius:
            lo = mu
        else:
            hi = mu
    w = vec @ (beta / (lam - hi))
    return w @ a @ w - 2 * b @ w


# ------------------------------------------------------------------------------------------- the bench

class Bench:
    def __init__(self, rates, repeats, budget_s):
        self.rates, self.repeats, self.budget_s, self.rows = rates, repeats, budget_s, []

    def ours(self, fn):
        return jax_time(fn, repeats=self.repeats, budget_s=self.budget_s)

    def ref(self, fn):
        return best_time(fn, repeats=self.repeats, budget_s=self.budget_s)

    def add(self, name, n, d, dtype, ours, numpy_s=None, sklearn_s=None, limit_s=None, **extra):
        compile_s, ours_s = ours if ours is not None else (None, None)
        row = {"name": name, "n": n, "d": d, "dtype": dtype,
               "ours_s": ours_s, "compile_s": compile_s, "numpy_s": numpy_s, "sklearn_s": sklearn_s,
               "limit_fraction": (limit_s / ours_s) if (limit_s is not None and ours_s) else None,
               "speedup_numpy": (numpy_s / ours_s) if (numpy_s and ours_s) else None,
               "speedup_sklearn": (sklearn_s / ours_s) if (sklearn_s and ours_s) else None,
               "limit_s": limit_s, **extra}
        self.rows.append(row)
        print(_line(row), flush=True)
        return row


def _line(row):
    def f(v, spec):
        return "-" if v is None else format(v, spec)
    return (f"{row['name']:34s} n={row['n']:>9} d={row['d']:>3} {row['dtype']:7s} ours={f(row['ours_s'], '.4g')}s "
            f"compile={f(row['compile_s'], '.3g')}s numpy={f(row['numpy_s'], '.4g')}s "
            f"x{f(row['speedup_numpy'], '.3g')} sklearn={f(row['sklearn_s'], '.4g')}s x{f(row['speedup_sklearn'], '.3g')} "
            f"limit={f(row['limit_fraction'], '.2f')} {row.get('note', '')}")


def _normal(key, shape, dtype, shift=0.0):
    return jax.random.normal(key, shape, dtype) + jnp.asarray(shift, dtype)


def bench_attention(b: Bench, sizes, key):
    from iclkd_jax import kd_decomposition, random_attention_weights, softmax_attention
    d, q = 64, 128
    for n in sizes:
        k1, k2, k3, key = jax.random.split(key, 4)
        w = random_attention_weights(k1, token_dim=d, key_dim=d, value_dim=d, dtype=jnp.float32)
        demos, queries = _normal(k2, (n, d), jnp.float32), _normal(k3, (q, d), jnp.float32)
        nw = [np.asarray(a, np.float64) for a in w]
        nd, nq = np.asarray(demos, np.float64), np.asarray(queries, np.float64)
        flops = 2.0 * n * d * 2 * d + 2.0 * q * d * d + 2.0 * q * n * d * 2
        numpy_s = b.ref(lambda: _np_kd(*nw, nd, nq))
        b.add("attention/kd_decomposition", n, d, "float32", b.ours(lambda: kd_decomposition(w, demos, None, queries)),
              numpy_s, None, limit_seconds(b.rates, "float32", flops=flops, exps=q * n), queries=q)
        b.add("attention/softmax", n, d, "float32", b.ours(lambda: softmax_attention(w, demos, queries)),
              numpy_s, None, limit_seconds(b.rates, "float32", flops=flops, exps=q * n), queries=q,
              note="NumPy reference computes the full decomposition")


def bench_gram(b: Bench, sizes, key):
    from sklearn.metrics.pairwise import rbf_kernel as sk_rbf

    from iclkd_jax import product_kernel, rbf_kernel
    d = 64
    gram = jax.jit(lambda k, x: k(x, x))
    for n in sizes:
        k1, k2, key = jax.random.split(key, 3)
        x = _normal(k1, (n, d), jnp.float32)
        xn, x32 = np.asarray(x, np.float64), np.asarray(x)
        h = math.sqrt(d)
        kern = rbf_kernel(bandwidth=jnp.float32(h))
        b.add("gram/rbf", n, d, "float32", b.ours(lambda: gram(kern, x)), b.ref(lambda: _np_rbf(h)(xn, xn)),
              b.ref(lambda: sk_rbf(x32, x32, gamma=1 / (2 * h * h))),
              limit_seconds(b.rates, "float32", flops=2.0 * d * n * n, exps=n * n),
              note="full n x n output (writes n^2 entries; the limit model ignores the write)")
        if n <= 1_000:
            wk = np.asarray(_normal(k2, (8, d), jnp.float32)) * 0.05
            pk = product_kernel(jnp.asarray(wk))
            b.add("gram/product", n, d, "float32", b.ours(lambda: gram(pk, x)),
                  b.ref(lambda: _np_product(wk.astype(np.float64))(xn, xn)), None,
                  limit_seconds(b.rates, "float32", flops=2.0 * (d + 8) * n * n, exps=n * n))


def bench_mmd(b: Bench, dense_sizes, blocked_sizes, key, *, sklearn_max=10_000, numpy_max=10_000):
    from iclkd_jax import mmd2, product_kernel, rbf_kernel
    d = 64
    h = math.sqrt(2 * d)
    for block, sizes in ((None, dense_sizes), (BLOCK, blocked_sizes)):
        for n in sizes:
            k1, k2, k3, key = jax.random.split(key, 4)
            dtypes = ("float32", "float64") if block and (n == 10_000 or len(sizes) == 1) else ("float32",)
            for dtype in dtypes:
                x, y = _normal(k1, (n, d), dtype), _normal(k2, (n, d), dtype, 0.05)
                xn, yn = np.asarray(x, np.float64), np.asarray(y, np.float64)
                kern = rbf_kernel(bandwidth=jnp.asarray(h, dtype))
                entries = 2.0 * n * n
                limit = limit_seconds(b.rates, dtype, flops=2.0 * d * entries, exps=entries)
                for estimator in ("biased", "unbiased"):
                    unb = estimator == "unbiased"
                    ours = b.ours(lambda: mmd2(x, y, kern, estimator=estimator, block_size=block))
                    value = float(mmd2(x, y, kern, estimator=estimator, block_size=block))
                    numpy_s = reference = None
                    if n <= numpy_max:
                        numpy_s = b.ref(lambda: _np_mmd2(_np_rbf(h), xn, yn, unb))
                        reference = _np_mmd2(_np_rbf(h), xn, yn, unb)
                    sklearn_s = None
                    if n <= sklearn_max:
                        xs, ys = np.asarray(x), np.asarray(y)
                        sklearn_s = b.ref(lambda: _sk_mmd2(xs, ys, h, unb))
                    kind = "dense" if block is None else f"blocked{block}"
                    b.add(f"mmd2/rbf/{estimator}/{kind}", n, d, dtype, ours, numpy_s, sklearn_s, limit, m=n, value=value,
                          rel_err_vs_numpy64=None if reference is None else abs(value - reference) / abs(reference))
    # Theorem 4.1's product kernel (no scikit-learn equivalent).
    for n, block in ((dense_sizes[0], None), (blocked_sizes[0], BLOCK)):
        k1, k2, k3, key = jax.random.split(key, 4)
        x, y = _normal(k1, (n, d), jnp.float32) / 8, _normal(k2, (n, d), jnp.float32, 0.05) / 8
        wk = np.asarray(_normal(k3, (8, d), jnp.float32)) * 0.3
        pk = product_kernel(jnp.asarray(wk))
        xn, yn = np.asarray(x, np.float64), np.asarray(y, np.float64)
        entries = 2.0 * n * n
        kind = "dense" if block is None else f"blocked{block}"
        b.add(f"mmd2/product/biased/{kind}", n, d, "float32", b.ours(lambda: mmd2(x, y, pk, block_size=block)),
              b.ref(lambda: _np_mmd2(_np_product(wk.astype(np.float64)), xn, yn, False)), None,
              limit_seconds(b.rates, "float32", flops=2.0 * (d + 8) * entries, exps=entries), m=n)


def bench_features(b: Bench, n, key):
    from iclkd_jax import mmd2_from_features
    dim = 8
    k1, k2 = jax.random.split(key)
    fx, fy = _normal(k1, (n, dim), jnp.float32), _normal(k2, (n, dim), jnp.float32, 0.01)
    fxn, fyn = np.asarray(fx, np.float64), np.asarray(fy, np.float64)
    limit = limit_seconds(b.rates, "float32", bytes_read=2.0 * n * dim * 4)
    b.add("mmd2_from_features/biased", n, dim, "float32", b.ours(lambda: mmd2_from_features(fx, fy)),
          b.ref(lambda: np.sum((fxn.mean(0) - fyn.mean(0)) ** 2)), None, limit, m=n,
          note="memory-bound: limit = bytes read / measured read bandwidth")
    b.add("mmd2_from_features/unbiased", n, dim, "float32",
          b.ours(lambda: mmd2_from_features(fx, fy, estimator="unbiased")), None, None, limit, m=n)


def bench_permutation(b: Bench, size, key):
    from iclkd_jax import mmd_permutation_test, rbf_kernel
    total, perms = size
    n, d = total // 2, 64
    k1, k2, k3 = jax.random.split(key, 3)
    x, y = _normal(k1, (n, d), jnp.float32), _normal(k2, (total - n, d), jnp.float32, 0.05)
    h = math.sqrt(2 * d)
    kern = rbf_kernel(bandwidth=jnp.float32(h))
    z = np.concatenate([np.asarray(x, np.float64), np.asarray(y, np.float64)])
    rng = np.random.default_rng(0)
    base = (np.arange(total) < n).astype(np.float64)

    def numpy_test():
        labels = np.concatenate([base[None], rng.permuted(np.tile(base, (perms, 1)), axis=1)])
        return _np_permutation(_np_rbf(h)(z, z), n, labels)

    flops = 2.0 * (perms + 1) * total**2 + 2.0 * d * total**2 / 2
    b.add("mmd_permutation_test/rbf", total, d, "float32",
          b.ours(lambda: mmd_permutation_test(x, y, kern, key=k3, num_permutations=perms)), b.ref(numpy_test), None,
          limit_seconds(b.rates, "float32", flops=flops, exps=total**2 / 2), permutations=perms,
          note="n + m pooled points; one Gram matrix, one (B+1, N) x (N, N) product")


def bench_ball(b: Bench, n, key):
    try:
        from iclkd_jax.quadratic import max_quadratic_on_ball
    except ImportError:
        b.add("max_quadratic_on_ball", n, n, "float64", None, note="not available (iclkd_jax.quadratic missing)")
        return
    k1, k2 = jax.random.split(key)
    g = jax.random.normal(k1, (n, n), jnp.float64)
    a = (g + g.T) / 2
    vec = jax.random.normal(k2, (n,), jnp.float64)
    an, bn = np.asarray(a), np.asarray(vec)
    b.add("max_quadratic_on_ball", n, n, "float64", b.ours(lambda: max_quadratic_on_ball(a, vec, 1.0)),
          b.ref(lambda: _np_ball(an, bn, 1.0)), None, limit_seconds(b.rates, "float64", flops=9.0 * n**3),
          note="limit: 9 n^3 FLOPs (symmetric eigendecomposition with vectors); d = n is the matrix order")


def bench_rademacher(b: Bench, size, key):
    try:
        from iclkd_jax.rademacher import rademacher_complexity
    except ImportError:
        b.add("rademacher_complexity", size[0], None, "float64", None,
              note="not available (iclkd_jax.rademacher missing)")
        return
    n, signs = size
    d = 16
    k1, k2 = jax.random.split(key)
    keys = jax.random.normal(k1, (n, d), jnp.float64) / math.sqrt(d)
    gram = jnp.exp(keys @ keys.T)
    gn = np.asarray(gram)
    rng = np.random.default_rng(0)

    def numpy_mc():
        s = rng.choice(np.array([-1.0, 1.0]), size=(signs, n))
        return np.mean(np.sqrt(np.maximum(((s @ gn) * s).sum(1), 0)))

    b.add("rademacher_complexity", n, d, "float64",
          b.ours(lambda: rademacher_complexity(k2, gram, 1.0, num_signs=signs)), b.ref(numpy_mc), None,
          limit_seconds(b.rates, "float64", flops=2.0 * signs * n * n), num_signs=signs,
          note="Monte Carlo over sign vectors on a given Gram matrix")


# ------------------------------------------------------------------------------- memory at n = 10^6

_CHILD = r"""
import json, resource, sys, time
import jax, jax.numpy as jnp
from iclkd_jax import mmd2, rbf_kernel
n, d, block = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
kx, ky = jax.random.split(jax.random.key(0))
x = jax.random.normal(kx, (n, d), jnp.float32)
y = jax.random.normal(ky, (n, d), jnp.float32) + 0.05
kern = rbf_kernel(bandwidth=jnp.float32(4.0))
start = time.perf_counter()
value = float(mmd2(x, y, kern, block_size=block)) if n > 0 else 0.0
seconds = time.perf_counter() - start
# VmHWM (Linux) is this process's own high-water mark; ru_maxrss can inherit the parent's across fork + exec.
try:
    peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) * 1024
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak_rss_bytes": peak,
                  "seconds": seconds, "value": value}))
"""


def _child_run(n, d, block):
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["ICLKD_CACHE_DIR"] = "off"
    out = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(d), str(block)], capture_output=True,
                         text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_memory(b: Bench, sizes, baseline, large):
    """Peak RSS of the blocked MMD^2 (d = 16) in fresh subprocesses, and XLA's buffer sizes at ``large``."""
    from iclkd_jax import rbf_kernel
    from iclkd_jax.mmd import _mmd2_blocked
    d = 16
    result = {"d": d, "block_size": BLOCK, "dtype": "float32", "measured": [], "target_n": large,
              "target_bytes": 2 * 1024**3}
    base = _child_run(0, d, BLOCK) if baseline else None
    result["baseline_rss_bytes"] = None if base is None else base["peak_rss_bytes"]
    for n in sizes:
        run = _child_run(n, d, BLOCK)
        result["measured"].append({"n": n, "m": n, **run})
        b.add(f"mmd2/rbf/biased/blocked{BLOCK}", n, d, "float32", (None, run["seconds"]), None, None,
              limit_seconds(b.rates, "float32", flops=2.0 * d * 2.0 * n * n, exps=2.0 * n * n), m=n,
              peak_rss_bytes=run["peak_rss_bytes"], note="fresh subprocess; ours_s includes compilation")
    spec = jax.ShapeDtypeStruct((large, d), jnp.float32)
    compiled = _mmd2_blocked.lower(spec, spec, rbf_kernel(bandwidth=jnp.float32(4.0)), False, BLOCK).compile()
    analysis = compiled.memory_analysis()
    if analysis is not None:
        result["xla_at_target"] = {k: int(getattr(analysis, k)) for k in
                                   ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
                                    "generated_code_size_in_bytes")}
    measured = result["measured"]
    if measured[-1]["n"] >= large:
        result["peak_rss_at_target_bytes"] = measured[-1]["peak_rss_bytes"]
        result["peak_rss_at_target_how"] = "measured"
    elif len(measured) >= 2:
        (n0, r0), (n1, r1) = [(r["n"], r["peak_rss_bytes"]) for r in measured[-2:]]
        slope = max((r1 - r0) / (n1 - n0), 0.0)
        result["peak_rss_at_target_bytes"] = r1 + slope * (large - n1)
        result["peak_rss_at_target_how"] = (f"linear extrapolation in n from n = {n0} and {n1} (memory is "
                                            "O((n + m) d): the tiles are fixed-size and their indices computed in "
                                            "the loop)")
        result["seconds_at_target_extrapolated"] = measured[-1]["seconds"] * (large / n1) ** 2
    else:
        result["peak_rss_at_target_bytes"] = None
        result["peak_rss_at_target_how"] = "not measured (one size only)"
    return result


# ---------------------------------------------------------------------------------------------- output

def _fmt(v, spec=".3g"):
    return "–" if v is None else format(v, spec)


def markdown(report) -> str:
    meta = report["meta"]
    lines = [f"Measured by `iclkd bench perf{' --quick' if meta['mode'] == 'quick' else ''}` on {meta['machine']} "
             f"({meta['devices']}), JAX {meta['jax']}, {meta['date']}. Times are minima over repeats, in seconds; "
             "×NumPy / ×sklearn are speed-ups of ours over the reference; *limit* is the fraction of this machine's "
             "measured peak (see the limit model in docs/performance.md).",
             "",
             "Machine rates measured in the same run: " + "; ".join(
                 f"{dt}: matmul {r['matmul_flops'] / 1e9:.1f} GFLOP/s, exp {r['exp_per_s'] / 1e9:.2f} G/s"
                 for dt, r in meta["rates"].items()) + f"; read bandwidth {meta['rates']['float32']['read_bytes_per_s'] / 1e9:.1f} GB/s.",
             "",
             "| workload | n | d | dtype | ours (s) | compile (s) | NumPy f64 (s) | ×NumPy | sklearn (s) | ×sklearn | limit |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["rows"]:
        lines.append(f"| {r['name']} | {r['n']} | {_fmt(r['d'])} | {r['dtype']} | {_fmt(r['ours_s'])} | "
                     f"{_fmt(r['compile_s'])} | {_fmt(r['numpy_s'])} | {_fmt(r['speedup_numpy'])} | "
                     f"{_fmt(r['sklearn_s'])} | {_fmt(r['speedup_sklearn'])} | {_fmt(r['limit_fraction'], '.0%')} |")
    mem = report.get("memory")
    if mem:
        lines += ["", f"Blocked MMD^2 memory (d = {mem['d']}, float32, block {mem['block_size']}): " + ", ".join(
            f"n = m = {r['n']}: peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB" for r in mem["measured"])
            + (f"; process baseline (JAX imported, nothing computed) {mem['baseline_rss_bytes'] / 2**20:.0f} MiB"
               if mem.get("baseline_rss_bytes") else "") + "."]
        if mem.get("peak_rss_at_target_bytes") is not None:
            lines.append(f"At n = m = {mem['target_n']}: {mem['peak_rss_at_target_bytes'] / 2**20:.0f} MiB "
                         f"({mem['peak_rss_at_target_how']}).")
        if mem.get("xla_at_target"):
            x = mem["xla_at_target"]
            lines.append(f"XLA's buffer plan compiled at n = m = {mem['target_n']}: arguments "
                         f"{x['argument_size_in_bytes'] / 2**20:.0f} MiB, temporaries {x['temp_size_in_bytes'] / 2**20:.1f} MiB.")
    return "\n".join(lines) + "\n"


#: the workloads of ``iclkd bench perf`` (``--only`` choices), one line each for ``--help``
WORKLOADS = {
    "attention": "kd_decomposition and softmax attention against NumPy float64",
    "gram": "RBF and product-kernel Gram matrices against NumPy and scikit-learn",
    "mmd": "mmd2 (RBF, product kernel), dense and blocked, biased and unbiased, against NumPy and scikit-learn",
    "features": "mmd2_from_features (linear time), biased and unbiased, against NumPy",
    "permutation": "mmd_permutation_test (RBF) against NumPy",
    "ball": "max_quadratic_on_ball (the exact supremum of Theorem 3.2) against a NumPy solver",
    "rademacher": "rademacher_complexity (Monte Carlo over signs) against NumPy",
    "memory": "peak memory of the blocked RBF mmd2 at large n (one child process per size)",
}


def add_arguments(parser: Parser) -> None:
    """The flags of ``iclkd bench perf``."""
    parser.epilog = listing("workloads (--only)", WORKLOADS)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under ~2 minutes")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test-suite run
    parser.add_argument("--json", type=output_file, metavar="PATH", help="write the JSON report here")
    parser.add_argument("--markdown", type=output_file, metavar="PATH", default=str(DEFAULT_OUTPUT_ROOT / "perf.md"),
                        help=f"write the Markdown table here (default {DEFAULT_OUTPUT_ROOT / 'perf.md'})")
    parser.add_argument("--only", nargs="+", choices=tuple(WORKLOADS), metavar="WORKLOAD",
                        help="run only these workloads (listed below)")


def main(argv=None) -> int:
    return standalone("iclkd bench perf", sys.modules[__name__], argv)


def run(args: argparse.Namespace) -> int:
    """``iclkd bench perf``: the report of every selected workload."""
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    sizes = SIZES[mode]
    # Compile times must be real compiles, not persistent-cache hits.
    jax.config.update("jax_enable_compilation_cache", False)
    started = time.perf_counter()
    rates = machine_rates(**({"matmul_size": 256, "exp_count": 1 << 18, "stream_bytes": 1 << 22} if mode == "tiny" else {}))
    bench = Bench(rates, repeats=1 if mode == "tiny" else 3, budget_s=0.5 if mode == "tiny" else 2.0)
    key = jax.random.key(0)
    keys = dict(zip(("attention", "gram", "mmd", "features", "permutation", "ball", "rademacher"),
                    jax.random.split(key, 7)))
    want = set(args.only or WORKLOADS)
    memory = None
    if "attention" in want:
        bench_attention(bench, sizes["attention"], keys["attention"])
    if "gram" in want:
        bench_gram(bench, sizes["gram"], keys["gram"])
    if "mmd" in want:
        bench_mmd(bench, sizes["mmd_dense"], sizes["mmd_blocked"], keys["mmd"])
    if "features" in want:
        bench_features(bench, sizes["features"], keys["features"])
    if "permutation" in want:
        bench_permutation(bench, sizes["perm"], keys["permutation"])
    if "ball" in want:
        bench_ball(bench, sizes["ball"], keys["ball"])
    if "rademacher" in want:
        bench_rademacher(bench, sizes["rademacher"], keys["rademacher"])
    if "memory" in want:
        memory = bench_memory(bench, sizes["memory"], sizes["memory_baseline"], sizes["large"])
    report = {"meta": {"mode": mode, "jax": jax.__version__, "numpy": np.__version__,
                       "machine": f"{platform.machine()} {os.cpu_count()} CPUs", "devices": str(jax.devices()),
                       "date": time.strftime("%Y-%m-%d %H:%M"), "load_average": os.getloadavg(),
                       "rates": rates, "timing": "minimum over repeats; compile_s = first call - warm call",
                       "persistent_compilation_cache": False, "wall_s": time.perf_counter() - started},
              "rows": bench.rows, "memory": memory}
    if args.json:
        write_json(args.json, report)
    if args.markdown:
        write_atomic(args.markdown, markdown(report))
    print(f"wall {report['meta']['wall_s']:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
