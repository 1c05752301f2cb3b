"""One smoke-profile run of every check, shared by the coverage test and the report tests.

``iclkd verify --profile smoke --json --html --junit-xml`` (every check not on a real model), then the
real-model checks, all in a fresh process under the call tracer of ``_coverage.py`` (no jit cache can
hide a call): ``tests/verification/test_coverage.py`` reads which public functions of ``iclkd_jax``
were called, ``tests/verification/test_reports.py`` reads the report files. The run happens once per
pytest run, whichever test asks first: pytest-xdist's worker processes share it through a folder of
the run's temporary directory, under a file lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_PROBE = r"""
import json, sys
from pathlib import Path
import jax
if sys.argv[1] != "off":
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
out = Path(sys.argv[2])
import verification
import _coverage as coverage
verification.enable_x64()
with coverage.trace_calls() as calls:  # before the checks are imported: their import-time calls count too
    from verification import cli
    from verification.engine import runner
    from verification.engine.plugins import all_checks
    from verification.io import html
    import verification.statements  # noqa: F401
    # a sibling page, which the verify page links to
    (out / "tightness.html").write_text(html.figures_page(kind="tightness", title="iclkd bench tightness", meta="",
                                                          sections=[], plots=False))
    status = cli.main(["verify", "--profile", "smoke", "--no-progress", "--json", str(out / "r.json"),
                       "--html", str(out / "r.html"), "--junit-xml", str(out / "r.xml")])
    report = json.loads((out / "r.json").read_text())
    real = [cid for cid in all_checks() if cid not in runner.default_ids()]
    results = runner.run_checks(real, profile="smoke")
statuses = {c["id"]: c["status"] for c in report["checks"]} | {r.id: r.status for r in results}
(out / "run.json").write_text(json.dumps({"status": status, "calls": dict(calls), "statuses": statuses}))
"""


def _shared_folder(tmp_path_factory) -> Path:
    """This pytest run's temporary directory: under pytest-xdist the one its workers' directories share."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def smoke_run(tmp_path_factory) -> tuple[Path, dict]:
    """The run's folder (``r.json``, ``r.html``, ``r.xml``, ``tightness.html``) and ``run.json``: the verify exit
    status, ``calls`` (public function -> calls) and ``statuses`` (check id -> status, real-model checks too)."""
    folder = _shared_folder(tmp_path_factory) / "iclkd-smoke-run"
    folder.mkdir(exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker runs it; the others wait, then read its files
        if not (folder / "run.json").exists():
            cache = os.environ.get("ICLKD_CACHE_DIR", str(REPO / ".jax_cache"))
            env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(REPO), str(Path(__file__).parent)))}
            proc = subprocess.run([sys.executable, "-c", _PROBE, cache, str(folder)], cwd=REPO, capture_output=True,
                                  text=True, timeout=900, env=env)
            assert proc.returncode == 0, proc.stderr[-3000:]
    return folder, json.loads((folder / "run.json").read_text())
