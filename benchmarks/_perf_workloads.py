"""The workloads of ``iclkd bench perf``: each times ours, its references in the same dtype, and the limit.

A :class:`Bench` collects rows. Every workload builds its inputs in one dtype and hands the
references (:mod:`benchmarks._perf_references`) arrays of that same dtype, so each speed-up
compares the same arithmetic. The work the limit model counts (:func:`mmd_work`) is the
least the algorithm must do, so that no honest implementation can beat ``limit_s``.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _perf_references as ref
from benchmarks._perf_peers import KernelSpec, installed_peers
from benchmarks._timing import best_time, fastest_rates, interleaved_best, jax_time, limit_seconds

DTYPES = ("float32", "float64")
#: the least number of interleaved rounds of an MMD^2 row (ours and every peer): the minimum of each over them
PEER_ROUNDS = 5
#: the pause before each timed call of an MMD^2 row whose calls take at least SETTLE_ABOVE_S (see bench_mmd).
#: Measured at n = m = 10^4, product kernel float64, quiet machine: without it ours took 0.59-0.74 s in two
#: interleaved runs beside PyTorch and the chunked NumPy reference, with it 0.50-0.52 s in two (NumPy's tiles
#: 0.57-0.63 s either way); a pool woken from sleep costs ~0.15 ms, under 1 % of such a call
SETTLE_S = 0.3
SETTLE_ABOVE_S = 0.02
#: the explicit tile size of the blocked rows (the default call chooses its own, see mmd.default_block_size)
BLOCK = 512


class Bench:
    """Rows of one run: timings (minimum over repeats), speed-ups and limit fractions."""

    def __init__(self, rates, repeats, budget_s, *, quiet=False, measure_rates=None, more_rounds_s=2.0):
        """``measure_rates``: if given, called after every row; the machine rates are the highest seen so far.
        ``more_rounds_s``: the MMD rows' interleaved rounds go on (up to 30) while a row has taken less than this
        (:func:`benchmarks._timing.interleaved_best`); 0 keeps exactly ``repeats`` rounds.

        On a shared machine the load changes from second to second: rates measured only once,
        in a busy moment, would be beaten by a workload timed in a quiet one. Measuring them
        between rows gives both the same chances, and the highest rate is the tightest limit.
        """
        self.rates, self.repeats, self.budget_s, self.rows, self.quiet = rates, repeats, budget_s, [], quiet
        self.rate_samples, self.measure_rates, self.more_rounds_s = [rates], measure_rates, more_rounds_s
        self.skipped_peers: dict[str, str] = {}

    def ours(self, fn):
        return jax_time(fn, repeats=self.repeats, budget_s=self.budget_s)

    def ref(self, fn):
        return best_time(fn, repeats=self.repeats, budget_s=self.budget_s)

    def add(self, name, n, d, dtype, ours, numpy_s=None, sklearn_s=None, work=None, **extra):
        """One row; ``work`` is ``dict(flops=, exps=, bytes_read=)`` for the limit model (None: no limit)."""
        compile_s, ours_s = ours if ours is not None else (None, None)
        row = {"name": name, "n": n, "d": d, "dtype": dtype, "load_average": os.getloadavg()[0],
               "ours_s": ours_s, "compile_s": compile_s, "numpy_s": numpy_s, "sklearn_s": sklearn_s,
               "speedup_numpy": (numpy_s / ours_s) if (numpy_s and ours_s) else None,
               "speedup_sklearn": (sklearn_s / ours_s) if (sklearn_s and ours_s) else None,
               "work": work, **extra}
        self._limit(row)
        self.rows.append(row)
        if not self.quiet:
            print(line(row), flush=True)
        if self.measure_rates is not None:
            self.rate_samples.append(self.measure_rates())
            self.rates = fastest_rates(*self.rate_samples)
        return row

    def _limit(self, row):
        work, ours_s = row["work"], row["ours_s"]
        row["limit_s"] = None if work is None else limit_seconds(self.rates, row["dtype"], **work)
        row["limit_fraction"] = (row["limit_s"] / ours_s) if (row["limit_s"] is not None and ours_s) else None
        for peer in row.get("peers", {}).values():
            peer["limit_fraction"] = (row["limit_s"] / peer["s"]) if (row["limit_s"] is not None and peer["s"]) else None

    def relimit(self, rates):
        """Every row's limit at new machine rates (the highest seen in the run: a tighter limit, never a looser one)."""
        self.rates = rates
        for row in self.rows:
            self._limit(row)


def line(row) -> str:
    def f(v, spec):
        return "-" if v is None else format(v, spec)
    return (f"{row['name']:34s} n={row['n']:>9} d={f(row['d'], '>3')} {row['dtype']:7s} ours={f(row['ours_s'], '.4g')}s "
            f"compile={f(row['compile_s'], '.3g')}s numpy={f(row['numpy_s'], '.4g')}s "
            f"x{f(row['speedup_numpy'], '.3g')} sklearn={f(row['sklearn_s'], '.4g')}s x{f(row['speedup_sklearn'], '.3g')} "
            f"limit={f(row['limit_fraction'], '.2f')} load={row['load_average']:.1f}"
            + (f" fastest peer {row['fastest_peer']} x{f(row['speedup_fastest_peer'], '.3g')}" if row.get("fastest_peer") else "")
            + f" {row.get('note', '')}")


def mmd_work(n: int, m: int, d: int, *, key_dim: int = 0) -> tuple[float, float]:
    """``(flops, exps)`` that an MMD^2 of a dot-product-based kernel must do at least.

    Entries: the symmetric within-sample sums need their upper triangles with the diagonal,
    ``n (n + 1) / 2`` and ``m (m + 1) / 2``, the cross sum all ``n m``. Each entry costs one
    exp and ``2 (d + d_k)`` FLOPs (the inner product ``x . y``; for the product kernel also
    ``(W^K x) . (W^K y)``); the product kernel adds the projections ``W^K x``, ``2 (n + m) d d_k``.
    Everything else (subtractions, the max shift, the sums) is counted as free, which makes
    the limit faster than any implementation can be.
    """
    entries = n * (n + 1) / 2 + m * (m + 1) / 2 + n * m
    return 2.0 * (d + key_dim) * entries + 2.0 * (n + m) * d * key_dim, entries


def normal(key, shape, dtype, shift=0.0):
    return jax.random.normal(key, shape, dtype) + jnp.asarray(shift, dtype)


def bench_attention(b: Bench, sizes, key):
    from iclkd_jax import kd_decomposition, random_attention_weights, softmax_attention
    d, q = 64, 128
    for n in sizes:
        k1, k2, k3, key = jax.random.split(key, 4)
        for dtype in DTYPES:
            w = random_attention_weights(k1, token_dim=d, key_dim=d, value_dim=d, dtype=dtype)
            demos, queries = normal(k2, (n, d), dtype), normal(k3, (q, d), dtype)
            nw = [np.asarray(a) for a in w]
            nd, nq = np.asarray(demos), np.asarray(queries)
            flops = 2.0 * n * d * 2 * d + 2.0 * q * d * d + 2.0 * q * n * d * 2
            work = {"flops": flops, "exps": q * n}
            numpy_s = b.ref(lambda: ref.kd_decomposition(*nw, nd, nq))
            b.add("attention/kd_decomposition", n, d, dtype, b.ours(lambda: kd_decomposition(w, demos, None, queries)),
                  numpy_s, None, work, queries=q)
            if dtype == "float32":
                b.add("attention/softmax", n, d, dtype, b.ours(lambda: softmax_attention(w, demos, queries)),
                      numpy_s, None, work, queries=q, note="NumPy reference computes the full decomposition")


def bench_gram(b: Bench, sizes, key):
    from sklearn.metrics.pairwise import rbf_kernel as sk_rbf

    from iclkd_jax import product_kernel, rbf_kernel
    d, dk = 64, 8
    gram = jax.jit(lambda k, x: k(x, x))
    for n in sizes:
        k1, k2, key = jax.random.split(key, 3)
        x = normal(k1, (n, d), jnp.float32)
        xn = np.asarray(x)
        h = math.sqrt(d)
        kern = rbf_kernel(bandwidth=jnp.float32(h))
        b.add("gram/rbf", n, d, "float32", b.ours(lambda: gram(kern, x)), b.ref(lambda: ref.rbf(h)(xn, xn)),
              b.ref(lambda: sk_rbf(xn, xn, gamma=1 / (2 * h * h))),
              {"flops": 2.0 * d * n * n, "exps": n * n},
              note="full n x n output (writes n^2 entries; the limit model ignores the write)")
        if n <= 1_000:
            wk = np.asarray(normal(k2, (dk, d), jnp.float32)) * 0.05
            pk = product_kernel(jnp.asarray(wk))
            b.add("gram/product", n, d, "float32", b.ours(lambda: gram(pk, x)),
                  b.ref(lambda: ref.product(wk)(xn, xn)), None,
                  {"flops": 2.0 * (d + dk) * n * n, "exps": n * n})


#: the MMD^2 rows: (kernel, estimator), each in float32 and float64
MMD_WORKLOADS = (("rbf", "biased"), ("rbf", "unbiased"), ("laplace", "biased"), ("linear", "biased"),
                 ("exp", "biased"), ("product", "biased"))


def _mmd_kernels(kind, dtype, h, wk64):
    """``(iclkd_jax kernel, peers' KernelSpec, float64 NumPy gram for the reference, key_dim)`` of one kernel."""
    from iclkd_jax import exp_kernel, laplace_kernel, linear_kernel, product_kernel, rbf_kernel
    wk = np.asarray(wk64)
    if kind == "rbf":
        return rbf_kernel(bandwidth=jnp.asarray(h, dtype)), KernelSpec("rbf", h), ref.rbf(h), 0
    if kind == "laplace":
        return laplace_kernel(bandwidth=jnp.asarray(h, dtype)), KernelSpec("laplace", h), ref.laplace(h), 0
    if kind == "linear":
        return linear_kernel(), KernelSpec("linear"), ref.linear, 0
    if kind == "exp":
        return exp_kernel(), KernelSpec("exp"), ref.exp, 0
    return product_kernel(wk64.astype(dtype)), KernelSpec("product", wk=wk), ref.product(wk), wk.shape[0]


def bench_mmd(b: Bench, sizes, key, *, numpy_max=10_000, sklearn_max=10_000, float64_max=10_000,
              reference_max=10_000, workloads=MMD_WORKLOADS):
    """The headline: the default ``mmd2`` call against its peers, every kernel, float32 and float64, one run.

    For each row ours and every installed peer (:mod:`benchmarks._perf_peers`: symmetric-tiled
    NumPy, PyTorch, KeOps) are timed in the same interleaved rounds (best of :data:`PEER_ROUNDS`), on
    the same inputs in the same dtype; the rows of RBF and the product kernel also time the
    bench's earlier references (NumPy in 2048-row chunks, scikit-learn's ``rbf_kernel``).
    Every value is compared with the float64 NumPy reference (chunked, computed once per kernel,
    untimed). Inputs: ``d = 64``, ``y`` shifted by 0.05; RBF and Laplace with ``h = sqrt(2 d)``;
    the exp and product kernels (``d_k = 8``, ``W^K`` scaled by 0.3) on tokens scaled by 1/8,
    so that every logit is at most 50 and the peers, which sum without a max shift, do not overflow.
    """
    from iclkd_jax import default_block_size, mmd2
    peers, skipped = installed_peers()
    b.skipped_peers = skipped
    d, dk = 64, 8
    h = math.sqrt(2 * d)
    for n in sizes:
        k1, k2, k3, key = jax.random.split(key, 4)
        x64, y64 = normal(k1, (n, d), jnp.float64), normal(k2, (n, d), jnp.float64, 0.05)
        wk64 = normal(k3, (dk, d), jnp.float64) * 0.3
        for kind, estimator in workloads:
            unb = estimator == "unbiased"
            scale = 1 / 8 if kind in ("exp", "product") else 1.0
            truth = truth_scale = None
            for dtype in DTYPES if n <= float64_max else DTYPES[:1]:
                x, y = (x64 * scale).astype(dtype), (y64 * scale).astype(dtype)
                kern, spec, gram_fn, key_dim = _mmd_kernels(kind, dtype, h, wk64)
                xn, yn = np.array(x), np.array(y)  # writable copies (PyTorch wraps them without copying)
                if truth is None and n <= reference_max:
                    truth, truth_scale = map(float, ref.mmd2_with_scale(gram_fn, np.asarray(x64 * scale),
                                                                          np.asarray(y64 * scale), unb))
                impls = {"ours": lambda: mmd2(x, y, kern, estimator=estimator)}
                impls.update({name: (lambda fn=fn: fn(spec, xn, yn, unb)) for name, fn in peers.items()})
                if kind in ("rbf", "product") and n <= numpy_max:
                    impls["numpy-chunked"] = lambda: ref.mmd2(gram_fn, xn, yn, unb)
                if kind == "rbf" and n <= sklearn_max:
                    impls["sklearn"] = lambda: ref.sklearn_mmd2(xn, yn, h, unb)
                compile_s, ours_s = jax_time(impls["ours"], repeats=1, budget_s=0.0)
                values = {name: float(fn()) for name, fn in impls.items()}
                # at least 5 rounds (1 in the test-suite run): on this shared 2-core machine one implementation's
                # call varies by ~10 % from round to round, so a minimum over 3 rounds could hand a 1.05x verdict to
                # chance; the slow earlier references sit out once they have spent their budget
                rounds = b.repeats if b.repeats == 1 else max(b.repeats, PEER_ROUNDS)
                # a pause before each call of the rows whose calls take >= SETTLE_ABOVE_S: OpenBLAS's and PyTorch's
                # threads spin on for ~0.1-0.3 s after each call, on the cores the next implementation needs
                settle = SETTLE_S if b.repeats > 1 and ours_s >= SETTLE_ABOVE_S else 0.0
                times = interleaved_best(impls, rounds=rounds, budget_s=4 * b.budget_s, settle_s=settle,
                                         more_rounds_s=b.more_rounds_s)

                def errors(value):
                    if truth is None:
                        return {"rel_err_vs_numpy64": None, "err_in_scale": None}
                    return {"rel_err_vs_numpy64": abs(value - truth) / abs(truth),
                            "err_in_scale": abs(value - truth) / truth_scale}
                others = {name: {"s": times[name], "value": values[name], **errors(values[name])}
                          for name in impls if name != "ours"}
                contenders = {name: p for name, p in others.items() if name in peers}
                fastest = min(contenders, key=lambda name: contenders[name]["s"]) if contenders else None
                if kind == "linear":  # closed form, memory-bound: the inputs read once
                    work = {"bytes_read": 2.0 * n * d * np.dtype(dtype).itemsize}
                else:
                    flops, exps = mmd_work(n, n, d, key_dim=key_dim)
                    work = {"flops": flops, "exps": exps}
                block = default_block_size(n, n, kern)
                b.add(f"mmd2/{kind}/{estimator}/default", n, d, dtype, (compile_s, times["ours"]),
                      others.get("numpy-chunked", {}).get("s"), others.get("sklearn", {}).get("s"), work,
                      m=n, value=values["ours"], key_dim=key_dim,
                      path="dense" if block is None else f"blocked{block}", **errors(values["ours"]), error_scale=truth_scale,
                      peers=others, fastest_peer=fastest,
                      speedup_fastest_peer=None if fastest is None else contenders[fastest]["s"] / times["ours"],
                      skipped_peers=sorted(skipped))


def bench_features(b: Bench, n, key):
    from iclkd_jax import mmd2_from_features
    dim = 8
    k1, k2 = jax.random.split(key)
    fx, fy = normal(k1, (n, dim), jnp.float32), normal(k2, (n, dim), jnp.float32, 0.01)
    fxn, fyn = np.asarray(fx), np.asarray(fy)
    work = {"bytes_read": 2.0 * n * dim * 4}
    b.add("mmd2_from_features/biased", n, dim, "float32", b.ours(lambda: mmd2_from_features(fx, fy)),
          b.ref(lambda: np.sum((fxn.mean(0) - fyn.mean(0)) ** 2)), None, work, m=n,
          note="memory-bound: limit = bytes read / measured read bandwidth")
    b.add("mmd2_from_features/unbiased", n, dim, "float32",
          b.ours(lambda: mmd2_from_features(fx, fy, estimator="unbiased")), None, None, work, m=n)


def bench_permutation(b: Bench, size, key):
    from iclkd_jax import mmd_permutation_test, rbf_kernel
    total, perms = size
    n, d = total // 2, 64
    k1, k2, k3 = jax.random.split(key, 3)
    x, y = normal(k1, (n, d), jnp.float32), normal(k2, (total - n, d), jnp.float32, 0.05)
    h = math.sqrt(2 * d)
    kern = rbf_kernel(bandwidth=jnp.float32(h))
    z = np.concatenate([np.asarray(x), np.asarray(y)])
    rng = np.random.default_rng(0)
    base = (np.arange(total) < n).astype(np.float32)

    def numpy_test():
        labels = np.concatenate([base[None], rng.permuted(np.tile(base, (perms, 1)), axis=1)])
        return ref.permutation_test(ref.rbf(h)(z, z), n, labels)

    flops = 2.0 * (perms + 1) * total**2 + 2.0 * d * total * (total + 1) / 2
    b.add("mmd_permutation_test/rbf", total, d, "float32",
          b.ours(lambda: mmd_permutation_test(x, y, kern, key=k3, num_permutations=perms)), b.ref(numpy_test), None,
          {"flops": flops, "exps": total * (total + 1) / 2}, permutations=perms,
          note="n + m pooled points; one Gram matrix, one (B+1, N) x (N, N) product")


def bench_ball(b: Bench, n, key):
    from iclkd_jax import max_quadratic_on_ball
    k1, k2 = jax.random.split(key)
    g = jax.random.normal(k1, (n, n), jnp.float64)
    a = (g + g.T) / 2
    vec = jax.random.normal(k2, (n,), jnp.float64)
    an, bn = np.asarray(a), np.asarray(vec)
    b.add("max_quadratic_on_ball", n, n, "float64", b.ours(lambda: max_quadratic_on_ball(a, vec, 1.0)),
          b.ref(lambda: ref.max_quadratic_on_ball(an, bn, 1.0)), None,
          {"flops": 4.0 / 3.0 * n**3},
          note="limit: 4/3 n^3 FLOPs (the tridiagonal reduction every symmetric eigensolver starts with); d = n")


def bench_rademacher(b: Bench, size, key):
    from iclkd_jax import rademacher_complexity
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
          {"flops": 2.0 * signs * n * n}, num_signs=signs,
          note="Monte Carlo over sign vectors on a given Gram matrix")
