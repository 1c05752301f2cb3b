"""docs/extending.md, executed: its plugin (a file outside the repository, every hook of
verification.core.protocol) runs through iclkd verify, search, verify --certify, bench tightness (cells, fits,
figure, table), verify --self-test, launch -n 2 and the false-alarm margin with no edit to the suite; its other
Python blocks run as written."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from verification import cli
from verification.core.registry import REGISTRY
from verification.engine.runner import run_check
from verification.io.report import strip_timing

DOC = Path(__file__).resolve().parents[2] / "docs" / "extending.md"
PLUGIN_IDS = ("convex-attention", "convex-attention@minilm")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("outside") / "convex_attention.py"
    path.write_text(python_blocks()[0])
    yield str(path)
    for cid in PLUGIN_IDS:
        REGISTRY.pop(cid, None)
    for name in [n for n in sys.modules if n.startswith("iclkd_plugin_convex_attention")]:
        del sys.modules[name]


def verify(plugin, *args):
    return cli.main(["verify", "--plugin", plugin, "--only", "convex-attention", "--profile", "smoke",
                     "--no-progress", *args])


def test_verify_and_list(plugin, tmp_path, capsys):
    assert verify(plugin, "--json", str(tmp_path / "r.json")) == 0
    (result,) = json.loads((tmp_path / "r.json").read_text())["checks"]
    assert result["id"] == "convex-attention" and result["status"] == "holds" and result["worst_case"]
    assert cli.main(["verify", "--plugin", plugin, "--list"]) == 0
    listed = capsys.readouterr().out
    assert "convex-attention " in listed and "convex-attention@minilm" in listed and "values-doubled" in listed


def test_self_test_catches_the_plugin_mutant(plugin, capsys):
    assert verify(plugin, "--self-test") == 0
    assert "caught  convex-attention" in capsys.readouterr().out


def test_search(plugin, tmp_path):
    out = tmp_path / "s.json"
    assert cli.main(["search", "convex-attention", "--plugin", plugin, "--budget", "64", "--json", str(out)]) == 0
    found = json.loads(out.read_text())["targets"]["convex-attention"]
    assert 0 < found["best_ratio"] <= 1.0 + 1e-12 and found["agreement"] < 1e-9


def test_certify(plugin, tmp_path):
    pytest.importorskip("flint", reason="the 'certify' extra is not installed")
    assert verify(plugin, "--certify", "--json", str(tmp_path / "c.json")) == 0
    (result,) = json.loads((tmp_path / "c.json").read_text())["checks"]
    assert result["certificate"]["status"] == "proven", result["certificate"]["reason"]


def test_bench_tightness(plugin, tmp_path):
    out = tmp_path / "tightness"
    plots = [] if importlib.util.find_spec("matplotlib") else ["--no-plots"]
    assert cli.main(["bench", "tightness", "--tiny", "--plugin", plugin, "--only", "convex-attention", "--out", str(out),
                     "--no-progress", *plots]) == 0
    doc = json.loads((out / "tightness.json").read_text())
    assert [r["value"] for r in doc["rows"]] == [2, 8] and all(r["bound_ge_observed"] for r in doc["rows"])
    fit = doc["slopes"]["convex-attention"]  # the tightness_fits hook
    assert fit["slope_lo"] <= fit["slope"] <= fit["slope_hi"] and fit["bound_slope"] == 0.0
    assert doc["not_offered"] == {}
    summary = (out / "summary.md").read_text()
    assert "| parameter | value | bound | observed |" in summary  # the tightness_table hook
    assert "`observed`: the largest position over the cell's draws." in summary
    if not plots:  # the tightness_figures hook
        assert doc["figures"] == ["convex-attention.png"] and (out / "convex-attention.png").stat().st_size > 0


def test_false_alarm_margin(plugin):
    from benchmarks import false_alarms

    cli.main(["verify", "--plugin", plugin, "--list"])  # loads the plugin into this process
    margin = false_alarms.margin_of("convex-attention")
    assert margin.meaning == "the largest distance outside [0, 1] of a position, over its tolerance."
    row = false_alarms.record(run_check("convex-attention", profile="smoke", seed=0))
    assert row["status"] == "holds" and set(row["components"]) == {"worst/tolerance"} and row["margin"] <= 1.0


def test_launch_two_processes_gives_the_one_process_report(plugin, tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert verify(plugin, "--json", str(one)) == 0
    assert cli.main(["launch", "-n", "2", "--", "verify", "--plugin", plugin, "--only", "convex-attention",
                     "--profile", "smoke", "--no-progress", "--json", str(two)]) == 0
    strip = lambda path: {k: v for k, v in strip_timing(json.loads(path.read_text())).items() if k != "versions"}
    assert strip(one) == strip(two)


def test_the_other_blocks_run_as_written(plugin):
    for block in python_blocks()[1:]:
        exec(compile(block, str(DOC), "exec"), {})
