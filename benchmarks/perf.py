"""``iclkd bench perf [--quick] [--json PATH] [--markdown PATH] [--only ...]``: speed and scale of the hot paths.

For each workload: our time (jit-compiled and warm; the first call's extra time is
reported separately as ``compile_s``, with JAX's persistent compilation cache off so
that it is a real compile), NumPy and, where one applies, scikit-learn references **in the
same dtype as ours** (the headline workloads, RBF and product-kernel MMD^2 and the KD
decomposition, run in float32 and float64), and the fraction of this machine's limit reached.

The limit model (measured in the same run by ``_timing.machine_rates``, at the start, after
every row and at the end; the highest rate of each kind kept):

    limit_s = matmul_flops / F  +  exps / E  +  bytes_read / BW

with ``F`` the FLOP/s and ``E`` the exponentials per second of the fastest formulation seen in the
run, by JAX, NumPy or PyTorch, in-cache tiles included (a full-size matmul writes its output to
memory and is no floor on its own), ``BW`` the read bandwidth of a large sum, per dtype. The work
counted is the least the algorithm must do (``_perf_workloads.mmd_work``): an MMD^2 needs the upper
triangles of the two within-sample Gram matrices and the whole cross one, each entry one exp and
``2 d`` FLOPs (``2 (d + d_k)`` for the product kernel). ``limit_fraction = limit_s / time`` for ours
and for every peer; a fraction above 1 means the model is wrong (tests check it), never clipped.
MMD^2 rows time ours beside the peers of ``_perf_peers`` (symmetric-tiled NumPy, PyTorch, KeOps when
installed; the skipped ones are named) in interleaved rounds, and name the fastest peer.
All timings are minima over repeats; on a shared, loaded machine the absolute seconds are
inflated, so read the ratios (all measured in the same run).

Modules: ``_perf_references`` (NumPy, scikit-learn), ``_perf_peers`` (the tuned peers), ``_timing`` (harness, machine rates),
``_perf_workloads`` (the rows), ``_perf_memory`` (child processes), ``_perf_report`` (Markdown);
this one is the command line.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax
import numpy as np

from benchmarks import _perf_workloads as wl
from benchmarks._perf_memory import bench_memory
from benchmarks._perf_peers import installed_peers
from benchmarks._perf_report import markdown
from benchmarks._timing import fastest_rates, machine_rates
from verification.core.outputs import DEFAULT_OUTPUT_ROOT, write_atomic, write_json
from verification.io.command import Parser, listing, output_file, standalone

SCHEMA_KEYS = ("name", "n", "d", "dtype", "ours_s", "compile_s", "numpy_s", "sklearn_s", "limit_fraction")

SIZES = {
    # tiny: the test-suite run (seconds); quick: < ~3 min; full: the sizes (long on a CPU).
    "tiny": {"attention": [256], "gram": [256], "mmd": [64, 300], "features": 10_000, "perm": (64, 20),
                 "ball": 64, "rademacher": (128, 256), "memory": [2_000], "memory_baseline": False, "large": 1_000_000},
    "quick": {"attention": [1_000], "gram": [1_000], "mmd": [1_000, 10_000], "features": 10_000_000, "perm": (2_000, 1_000),
                  "ball": 512, "rademacher": (2_000, 4_096), "memory": [10_000, 30_000], "memory_baseline": True,
                  "large": 1_000_000},
    "full": {"attention": [1_000, 10_000, 100_000], "gram": [1_000, 10_000], "mmd": [1_000, 10_000, 100_000],
                 "features": 10_000_000, "perm": (4_000, 1_000), "ball": 1_024, "rademacher": (4_000, 4_096),
                 "memory": [100_000, 1_000_000], "memory_baseline": True, "large": 1_000_000},
}
_TINY_RATES = {"matmul_size": 256, "exp_count": 1 << 18, "stream_bytes": 1 << 22, "tile_rows": 256, "peer_tile": 256,
               "peer_repeats": 8}


#: the workloads of ``iclkd bench perf`` (``--only`` choices), one line each for ``--help``
WORKLOADS = {
    "attention": "kd_decomposition (float32 and float64) and softmax attention against NumPy in the same dtype",
    "gram": "RBF and product-kernel Gram matrices against NumPy and scikit-learn",
    "mmd": "the default mmd2 call (RBF biased/unbiased, product kernel), float32 and float64, against NumPy and scikit-learn",
    "features": "mmd2_from_features (linear time), biased and unbiased, against NumPy",
    "permutation": "mmd_permutation_test (RBF) against NumPy",
    "ball": "max_quadratic_on_ball (the exact supremum of Theorem 3.2) against a NumPy solver",
    "rademacher": "rademacher_complexity (Monte Carlo over signs) against NumPy",
    "memory": "peak memory of the default RBF mmd2 call at large n (one child process per size)",
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
    rate_args = _TINY_RATES if mode == "tiny" else {}
    load = os.getloadavg()
    start_rates = machine_rates(**rate_args)
    # between rows except in the tiny (test) mode, whose rows take milliseconds; the tiny mode checks the report's
    # contents, not its timings: one interleaved round per MMD row instead of up to 30 in 2 s
    bench = wl.Bench(start_rates, repeats=1 if mode == "tiny" else 3, budget_s=0.5 if mode == "tiny" else 2.0,
                     measure_rates=None if mode == "tiny" else lambda: machine_rates(**rate_args, light=True),
                     more_rounds_s=0.0 if mode == "tiny" else 2.0)
    key = jax.random.key(0)
    keys = dict(zip(("attention", "gram", "mmd", "features", "permutation", "ball", "rademacher"),
                    jax.random.split(key, 7), strict=False))
    want = set(args.only or WORKLOADS)
    memory = None
    if "attention" in want:
        wl.bench_attention(bench, sizes["attention"], keys["attention"])
    if "gram" in want:
        wl.bench_gram(bench, sizes["gram"], keys["gram"])
    if "mmd" in want:
        wl.bench_mmd(bench, sizes["mmd"], keys["mmd"])
    if "features" in want:
        wl.bench_features(bench, sizes["features"], keys["features"])
    if "permutation" in want:
        wl.bench_permutation(bench, sizes["perm"], keys["permutation"])
    if "ball" in want:
        wl.bench_ball(bench, sizes["ball"], keys["ball"])
    if "rademacher" in want:
        wl.bench_rademacher(bench, sizes["rademacher"], keys["rademacher"])
    if "memory" in want:
        memory = bench_memory(bench, sizes["memory"], sizes["memory_baseline"], sizes["large"])
    rates = fastest_rates(*bench.rate_samples, machine_rates(**rate_args))
    bench.relimit(rates)
    report = {"meta": {"mode": mode, "jax": jax.__version__, "numpy": np.__version__,
                       "machine": f"{platform.machine()} {os.cpu_count()} CPUs", "devices": str(jax.devices()),
                       "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"), "load_average": load,
                       "load_average_end": os.getloadavg(), "rates": rates, "rates_start": start_rates,
                       "rate_measurements": len(bench.rate_samples) + 1,
                       "timing": "minimum over repeats (MMD^2 rows: over interleaved rounds of ours and every peer); "
                                 "compile_s = first call - warm call",
                       "peers": sorted(installed_peers()[0]), "skipped_peers": bench.skipped_peers,
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

