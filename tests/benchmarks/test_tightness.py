"""`iclkd bench tightness` in its tiny configuration: files and schema, bounds hold, thm-3.2 slope,
thm-4.1 attained, resume without recomputation, identical results on 2 forced host devices."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

tightness = pytest.importorskip("benchmarks.tightness")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A subset (thm-4.1 only, matplotlib missing: no plots) first, then the whole tiny sweep in the same folder."""
    out = tmp_path_factory.mktemp("tightness")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError: plots skipped
        assert tightness.main(["--tiny", "--out", str(out), "--only", "thm-4.1", "--no-progress"]) == 0
    assert not list(out.glob("*.png")) and (out / "summary.md").exists() and (out / "tightness.csv").exists()
    first = json.loads((out / "tightness.json").read_text())
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert tightness.main(["--tiny", "--out", str(out), "--no-progress", "--html", str(out / "tightness.html")]) == 0
    return out, first, mtimes, json.loads((out / "tightness.json").read_text())


def test_html_page_inlines_every_plot(run):
    out, _, _, doc = run
    page = (out / "tightness.html").read_text()
    assert '<meta name="iclkd-page" content="tightness">' in page and "<script" not in page
    assert page.count("data:image/png;base64,") == len(doc["figures"]) == 4
    for theorem in ("thm-3.2", "thm-4.1", "thm-4.2", "lemma-features"):
        assert f"<h2>{theorem}</h2>" in page


def test_files_and_schema(run):
    out, _, _, doc = run
    for name in ("tightness.json", "tightness.csv", "summary.md", "thm-3.2.png", "thm-4.1.png", "thm-4.2.png",
                 "lemma-features.png"):
        assert (out / name).stat().st_size > 0, name
    assert {r["theorem"] for r in doc["rows"]} == {"thm-3.2", "thm-4.1", "thm-4.2", "lemma-features"}
    for row in doc["rows"]:
        assert set(tightness.ROW_KEYS) <= set(row), row
        if row["observed_lo"] is not None:
            assert row["observed_lo"] <= row["observed"] <= row["observed_hi"], row
    with open(out / "tightness.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(doc["rows"]) and list(table[0])[:7] == list(tightness.ROW_KEYS)
    summary = (out / "summary.md").read_text()
    assert "![thm-3.2](thm-3.2.png)" in summary and "## Slopes" in summary
    # a hook a swept statement does not implement is reported, in the JSON and the summary
    assert list(doc["not_offered"]) == ["thm-4.2"] and list(doc["not_offered"]["thm-4.2"]) == ["tightness_fits"]
    assert doc["not_offered"]["thm-4.2"]["tightness_fits"] in summary
    # statistical rows of thm-3.2 carry their interval; the pieces add up to the bound
    for row in (r for r in doc["rows"] if r["theorem"] == "thm-3.2"):
        assert row["observed_lo"] is not None
        assert row["rademacher_term"] + row["deviation_term"] == pytest.approx(row["bound"], rel=1e-12)


def test_every_proven_row_has_bound_at_least_observed(run):
    doc = run[3]
    proven = [r for r in doc["rows"] if r["kind"] == "theorem"]
    assert proven and all(r["bound_ge_observed"] for r in proven)
    assert all(r["observed"] <= r["bound"] * (1 + tightness.REL_TOL) for r in proven)
    assert doc["meta"]["rows_bound_below_observed"] == 0


def test_thm_3_2_slope_reported(run):
    s = run[3]["slopes"]["thm-3.2"]
    assert s["slope_lo"] <= s["slope"] <= s["slope_hi"]
    assert s["bound_slope"] == pytest.approx(-0.5, abs=1e-9)
    assert -1.5 < s["slope"] < 0.0


def test_attained_family_is_tight(run):
    rows = [r for r in run[3]["rows"] if r["parameter"] == "t (attained)"]
    assert rows
    for r in rows:
        assert abs(r["bound"] / r["observed"] - 1) < 1e-6 and r["max_abs_ratio_minus_1"] < 1e-6


def test_resume_does_not_recompute_finished_cells(run):
    out, first, mtimes, doc = run
    assert first["meta"]["cells_computed"] == len(first["cells"]["computed"]) > 0
    assert set(first["cells"]["computed"]) <= set(doc["cells"]["loaded"])
    assert not set(first["cells"]["computed"]) & set(doc["cells"]["computed"])
    for name, t in mtimes.items():
        assert (out / "cells" / name).stat().st_mtime_ns == t, name
    assert not list((out / "cells").glob("*.tmp"))
    # the rows of the loaded cells equal the first run's
    again = [r for r in doc["rows"] if r["theorem"] == "thm-4.1"]
    assert again == first["rows"]


def test_same_results_on_two_forced_host_devices(run, tmp_path):
    out = run[0]
    # keep the session's XLA_FLAGS (conftest's optimisation level): the rows are compared bit for bit
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    env = {**os.environ, "XLA_FLAGS": flags.strip(), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.tightness", "--tiny", "--out", str(tmp_path),
                           "--only", "lemma-features", "--no-plots", "--no-progress"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "tightness.json").read_text())
    assert len(doc["meta"]["devices"]) == 2
    cells = sorted((tmp_path / "cells").glob("*.json"))
    assert cells
    for path in cells:
        two, one = json.loads(path.read_text()), json.loads((out / "cells" / path.name).read_text())
        assert two["rows"] == one["rows"] and two["raw"] == one["raw"]


def test_a_fit_without_its_slope_is_a_hook_error(monkeypatch):
    from verification.core import protocol
    from verification.core.model import Check

    class BrokenFits(Check):
        id = "broken-fits"
        kind = "theorem"
        tightness_cells = staticmethod(lambda mode: [])
        tightness_fits = staticmethod(lambda cells, bootstrap: {"broken": {"x": "log n"}})

    monkeypatch.setattr(tightness, "sweeping_checks", lambda: {"broken-fits": BrokenFits})
    with pytest.raises(protocol.HookError, match="fit 'broken' lacks y, slope, slope_lo, slope_hi"):
        tightness.slopes_of([{"theorem": "broken-fits"}], "tiny", 0)
