"""Coverage of the library by the verdicts: the smoke profile of ``iclkd verify``, run under a call
tracer in a fresh process (no jit cache can hide a call), calls every public function of ``iclkd_jax`` that computes
a quantity of a statement; the others are listed, with a reason, in tests/verification/_coverage.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import _coverage as coverage

REPO = Path(__file__).resolve().parents[2]

_PROBE = r"""
import json, sys
import jax
if sys.argv[1] != "off":
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
import verification
import _coverage as coverage
verification.enable_x64()
with coverage.trace_calls() as calls:  # before the checks are imported: their import-time calls count too
    from verification.engine import runner
    from verification.engine.plugins import all_checks
    import verification.statements  # noqa: F401
    results = runner.run_checks(list(all_checks()), profile="smoke")
print(json.dumps({"calls": dict(calls), "statuses": {r.id: r.status for r in results}}))
"""


def test_every_public_function_is_exercised_or_listed():
    cache = os.environ.get("ICLKD_CACHE_DIR", str(REPO / ".jax_cache"))
    proc = subprocess.run([sys.executable, "-c", _PROBE, cache], cwd=REPO, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONPATH": os.pathsep.join((str(REPO), str(Path(__file__).parent)))})
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in run["statuses"].values(), run["statuses"]
    public = set(coverage.public_functions())
    called = set(run["calls"])
    listed = set(coverage.OUTSIDE_STATEMENTS) | set(coverage.EXERCISED_ELSEWHERE) | set(coverage.NOT_YET_COVERED)
    assert not (listed - public), f"listed but not public functions of iclkd_jax: {sorted(listed - public)}"
    missing = sorted(public - called - listed)
    assert not missing, ("public functions of iclkd_jax that no check calls and tests/verification/_coverage.py does not "
                         f"list (call them from a check, or list them with a reason): {missing}")
    newly = sorted(set(coverage.NOT_YET_COVERED) & called)
    assert not newly, f"now exercised: remove from coverage.NOT_YET_COVERED: {newly}"


def test_the_tracer_counts_calls_through_every_import_style():
    import iclkd_jax as ik
    from iclkd_jax import kernels

    with coverage.trace_calls() as calls:
        ik.linear_kernel()
        kernels.rbf_kernel(bandwidth=1.0)
    assert calls["iclkd_jax.kernels.linear_kernel"] == 1 and calls["iclkd_jax.kernels.rbf_kernel"] == 1
    assert ik.linear_kernel is kernels.linear_kernel  # restored
