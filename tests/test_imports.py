"""No import-time global state: importing any module of the project, in a fresh process, leaves
JAX's configuration (float64 mode included) exactly as it was. Float64 is switched on by the entry points
(``iclkd``, ``python -m benchmarks.*``) and by ``verification.enable_x64()``, never by an import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("iclkd_jax", "verification", "benchmarks", "experiments")

_PROBE = r"""
import importlib, json, pkgutil, sys
import jax

def snapshot():
    return {k: repr(v) for k, v in jax.config.values.items()}

before = snapshot()
x64_before = bool(jax.config.jax_enable_x64)
imported, skipped, changed = [], {}, {}
for package in sys.argv[1:]:
    root = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(root.__path__, package + ".")]
    for name in names:
        if name.endswith("__main__"):
            continue  # runs the command line
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:  # an optional extra that is not installed
            skipped[name] = str(err)
            continue
        imported.append(name)
        now = snapshot()
        if now != before:
            changed[name] = {k: (before.get(k), now.get(k)) for k in now if now.get(k) != before.get(k)}
            before = now
print(json.dumps({"x64_before": x64_before, "x64_after": bool(jax.config.jax_enable_x64),
                  "imported": imported, "skipped": skipped, "changed": changed}))
"""


def test_importing_any_module_changes_no_jax_configuration():
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    proc = subprocess.run([sys.executable, "-c", _PROBE, *PACKAGES], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["x64_before"] is False
    assert result["changed"] == {}, result["changed"]
    assert result["x64_after"] is False
    assert {"verification", "verification.search", "benchmarks.perf", "benchmarks.tightness",
            "verification.statements.thm_4_1.check", "experiments.cli"} <= set(result["imported"])
