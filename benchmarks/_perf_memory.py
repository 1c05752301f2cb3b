"""The memory workload of ``iclkd bench perf``: peak RSS of the default ``mmd2`` call in fresh processes.

Each size runs in its own child process (a fresh interpreter: its high-water mark is its own),
and XLA's buffer plan is compiled (not run) at the target size ``n = m = 10^6``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp

from benchmarks._perf_workloads import Bench, mmd_work

_CHILD = r"""
import json, resource, sys, time
import jax, jax.numpy as jnp
from iclkd_jax import mmd2, rbf_kernel
n, d = int(sys.argv[1]), int(sys.argv[2])
kx, ky = jax.random.split(jax.random.key(0))
x = jax.random.normal(kx, (n, d), jnp.float32)
y = jax.random.normal(ky, (n, d), jnp.float32) + 0.05
kern = rbf_kernel(bandwidth=jnp.float32(4.0))
start = time.perf_counter()
value = float(mmd2(x, y, kern)) if n > 0 else 0.0  # the default call (tiled above 256 rows)
seconds = time.perf_counter() - start
# VmHWM (Linux) is this process's own high-water mark; ru_maxrss can inherit the parent's across fork + exec.
try:
    peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) * 1024
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak_rss_bytes": peak,
                  "seconds": seconds, "value": value}))
"""



def _child_run(n, d):
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["ICLKD_CACHE_DIR"] = "off"
    out = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(d)], capture_output=True,
                         text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_memory(b: Bench, sizes, baseline, large):
    """Peak RSS of the default RBF ``mmd2`` (d = 16, float32) in fresh subprocesses, and XLA's buffers at ``large``."""
    from iclkd_jax import default_block_size, mmd2, rbf_kernel
    d = 16
    result = {"d": d, "block_size": default_block_size(large, large), "dtype": "float32", "measured": [],
              "target_n": large, "target_bytes": 2 * 1024**3}
    base = _child_run(0, d) if baseline else None
    result["baseline_rss_bytes"] = None if base is None else base["peak_rss_bytes"]
    for n in sizes:
        run = _child_run(n, d)
        result["measured"].append({"n": n, "m": n, **run})
        flops, exps = mmd_work(n, n, d)
        b.add("mmd2/rbf/biased/default (child)", n, d, "float32", (None, run["seconds"]), None, None,
              {"flops": flops, "exps": exps}, m=n,
              peak_rss_bytes=run["peak_rss_bytes"], note="fresh subprocess; ours_s includes compilation")
    spec = jax.ShapeDtypeStruct((large, d), jnp.float32)
    kern = rbf_kernel(bandwidth=jnp.float32(4.0))
    compiled = jax.jit(lambda a, c: mmd2(a, c, kern)).lower(spec, spec).compile()
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
