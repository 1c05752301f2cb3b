"""docs/extending.md, executed: its plugin (a file outside the repository, every hook of
verification.core.protocol) runs through iclkd verify, search, verify --certify, bench tightness,
verify --self-test and launch -n 2 with no edit to the suite; its other Python blocks run as written."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from verification import cli
from verification.core.registry import REGISTRY
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
    assert cli.main(["bench", "tightness", "--tiny", "--plugin", plugin, "--only", "convex-attention", "--out", str(out),
                     "--no-plots", "--no-progress"]) == 0
    rows = json.loads((out / "tightness.json").read_text())["rows"]
    assert [r["value"] for r in rows] == [2, 8] and all(r["bound_ge_observed"] for r in rows)


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
