"""The memory workload of ``iclkd bench perf``: peak RSS of the default ``mmd2`` call and of each peer, in fresh processes.

Each (implementation, size) runs in its own child process (a fresh interpreter: its high-water mark
is its own). The child records its resident set before the inputs exist, creates them
(``x``, ``y``: ``n x d`` float32, the same values for every implementation), makes one warm call
(compilation, thread pools, reusable buffers: fixed costs, recorded as ``rss_before_call``), then
resets the kernel's high-water mark (``/proc/self/clear_refs``, Linux) and makes the measured call:

    call_peak = inputs + (VmHWM during the measured call - VmRSS just before it)

the inputs plus everything the call allocates on top of them. Memory is linear when
``call_peak <= 1.5 x inputs + TILE_BUDGET_BYTES`` (a fixed allowance for tiles and per-thread
buffers) at every size. XLA's buffer plan is
also compiled (not run) at the target size ``n = m = 10^6``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp

from benchmarks._perf_peers import installed_peers
from benchmarks._perf_workloads import Bench, mmd_work

#: the fixed allowance of the linear-memory criterion (tiles and per-thread buffers), independent of n
TILE_BUDGET_BYTES = 16 * 2**20

_CHILD = r"""
import json, math, sys, time
import numpy as np

def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":")) * 1024

impl, n, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
h = math.sqrt(2 * d)
rng = np.random.default_rng(0)
if impl == "ours":
    import jax, jax.numpy as jnp
    from iclkd_jax import mmd2, rbf_kernel
    kern = rbf_kernel(bandwidth=jnp.float32(h))
    jax.block_until_ready(jnp.zeros(1) + 1)      # the runtime is up before the baseline
    before_inputs = status("VmRSS")
    # the same inputs as the peers', moved into XLA's buffers (the NumPy copies are freed)
    x = jnp.asarray(rng.standard_normal((n, d), dtype=np.float32))
    y = jnp.asarray(rng.standard_normal((n, d), dtype=np.float32) + np.float32(0.05))
    jax.block_until_ready((x, y))
    run = lambda: float(mmd2(x, y, kern))        # the default call (tiled above 256 rows)
else:
    from benchmarks._perf_peers import KernelSpec, PEERS
    if impl == "torch":
        import torch
    peer = PEERS[impl][0]
    before_inputs = status("VmRSS")
    x = rng.standard_normal((n, d), dtype=np.float32)
    y = rng.standard_normal((n, d), dtype=np.float32) + np.float32(0.05)
    run = lambda: peer(KernelSpec("rbf", h), x, y, False)
after_inputs = status("VmRSS")
run()
open("/proc/self/clear_refs", "w").write("5")    # reset VmHWM to the current RSS
before_call = status("VmRSS")
start = time.perf_counter()
value = run()
seconds = time.perf_counter() - start
peak = status("VmHWM")
print(json.dumps({"impl": impl, "n": n, "d": d, "inputs_bytes": 2 * n * d * 4, "rss_before_inputs": before_inputs,
                  "rss_after_inputs": after_inputs, "rss_before_call": before_call, "peak_rss_bytes": peak,
                  "call_peak_bytes": 2 * n * d * 4 + peak - before_call, "seconds": seconds, "value": value}))
"""


def _child_run(impl, n, d):
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["ICLKD_CACHE_DIR"] = "off"
    out = subprocess.run([sys.executable, "-c", _CHILD, impl, str(n), str(d)], capture_output=True,
                         text=True, env=env, check=True)
    run = json.loads(out.stdout.strip().splitlines()[-1])
    run["allowed_bytes"] = 1.5 * run["inputs_bytes"] + TILE_BUDGET_BYTES
    run["linear"] = run["call_peak_bytes"] <= run["allowed_bytes"]
    return run


def bench_memory(b: Bench, sizes, baseline, large):
    """Peak RSS of the default RBF ``mmd2`` (d = 64, float32) and of every installed peer in fresh subprocesses.

    ``baseline`` is kept for the command line's modes (the baseline is now measured inside each child).
    """
    from iclkd_jax import default_block_size, mmd2, rbf_kernel
    del baseline
    d = 64
    peers, skipped = installed_peers()
    result = {"d": d, "block_size": default_block_size(large, large), "dtype": "float32", "measured": [],
              "peers": {}, "skipped_peers": skipped, "target_n": large, "target_bytes": 2 * 1024**3,
              "tile_budget_bytes": TILE_BUDGET_BYTES}
    for n in sizes:
        run = _child_run("ours", n, d)
        result["measured"].append({"m": n, **run})
        result["peers"][str(n)] = {name: _child_run(name, n, d) for name in peers}
        flops, exps = mmd_work(n, n, d)
        b.add("mmd2/rbf/biased/default (child)", n, d, "float32", (None, run["seconds"]), None, None,
              {"flops": flops, "exps": exps}, m=n, peak_rss_bytes=run["peak_rss_bytes"],
              call_peak_bytes=run["call_peak_bytes"], note="fresh subprocess, warm call")
    spec = jax.ShapeDtypeStruct((large, d), jnp.float32)
    kern = rbf_kernel(bandwidth=jnp.float32(math.sqrt(2 * d)))
    compiled = jax.jit(lambda a, c: mmd2(a, c, kern)).lower(spec, spec).compile()
    analysis = compiled.memory_analysis()
    if analysis is not None:
        result["xla_at_target"] = {k: int(getattr(analysis, k)) for k in
                                   ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
                                    "generated_code_size_in_bytes")}
    measured = result["measured"]
    if measured[-1]["n"] >= large:
        result["peak_rss_at_target_bytes"] = measured[-1]["call_peak_bytes"]
        result["peak_rss_at_target_how"] = "measured"
    elif len(measured) >= 2:
        (n0, r0), (n1, r1) = [(r["n"], r["call_peak_bytes"]) for r in measured[-2:]]
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
