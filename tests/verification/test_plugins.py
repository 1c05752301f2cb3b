"""Checks from the user's own code: the README's example file runs through ``iclkd verify --plugin``
and ``--self-test --plugin``; the entry-point group ``iclkd.checks`` loads an installed package's checks; bad
plugins stop the run with one line and exit status 2."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest

from verification import api, cli
from verification.core.registry import REGISTRY
from verification.engine import plugins
from verification.io.command import ExitStatus

README = Path(__file__).resolve().parents[2] / "README.md"
(EXAMPLE,) = re.findall(r"```py\n(\"\"\"my_claim\.py.*?)```", README.read_text(), flags=re.S)
CHECK_ID = "my-permutation-invariance"


@pytest.fixture
def unregister():
    yield
    REGISTRY.pop(CHECK_ID, None)
    for name in [n for n in sys.modules if n.startswith(("iclkd_plugin_my_claim", "my_claims_pkg"))]:
        del sys.modules[name]
    plugins._LOADED_ENTRY_POINTS.clear()
    plugins._SCANNED_PATH = None


@pytest.fixture
def example(tmp_path, unregister) -> Path:
    path = tmp_path / "outside" / "my_claim.py"
    path.parent.mkdir()
    path.write_text(EXAMPLE)
    return path


def test_readme_example_runs_in_verify_and_the_report(example, tmp_path, capsys):
    report = tmp_path / "r.json"
    status = cli.main(["verify", "--plugin", str(example), "--only", CHECK_ID, "--profile", "smoke",
                       "--no-progress", "--json", str(report), "--markdown", str(tmp_path / "r.md")])
    assert status == ExitStatus.OK
    (check,) = json.loads(report.read_text())["checks"]
    assert (check["id"], check["kind"], check["status"]) == (CHECK_ID, "lemma", "holds")
    assert check["cases"] >= 20 and 0 <= check["worst"] <= 1
    assert CHECK_ID in (tmp_path / "r.md").read_text()
    assert f"plugin {example}: {CHECK_ID}" in capsys.readouterr().err
    assert cli.main(["verify", "--plugin", str(example), "--list"]) == ExitStatus.OK
    assert "mutant token-duplicated" in capsys.readouterr().out


def test_readme_example_self_test_catches_its_mutants(example, capsys):
    status = cli.main(["verify", "--self-test", "--plugin", str(example), "--only", CHECK_ID, "--profile", "smoke",
                       "--no-progress"])
    assert status == ExitStatus.OK
    assert "3/3 mutants caught" in capsys.readouterr().out


def test_entry_point_group_loads_an_installed_package(tmp_path, monkeypatch, unregister):
    package = tmp_path / "site" / "my_claims_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(EXAMPLE)
    dist = tmp_path / "site" / "my_claims_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-claims-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{api.ENTRY_POINT_GROUP}]\nmy_claims = my_claims_pkg\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    assert CHECK_ID in api.all_checks()
    assert cli.main(["verify", "--only", CHECK_ID, "--profile", "smoke", "--no-progress"]) == ExitStatus.OK


def test_a_broken_entry_point_is_loud(tmp_path, monkeypatch, unregister, capsys):
    dist = tmp_path / "site" / "broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{api.ENTRY_POINT_GROUP}]\nbroken = no_such_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    assert cli.main(["verify", "--list"]) == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert "entry point broken = no_such_module_anywhere" in err and "ModuleNotFoundError" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("source, fragment", [
    (None, "no such file"),
    ("def broken(:\n", "SyntaxError"),
    ("import no_such_module_anywhere\n", "ModuleNotFoundError"),
    ("x = 1\n", "registered no check"),
    ("from verification import api\n\n@api.register\nclass Taken(api.Check):\n    id = 'thm-3.1a'\n"
     "    kind = 'theorem'\n    title = 'takes a built-in id'\n", "registered twice"),
], ids=["missing", "syntax", "import", "empty", "taken-id"])
def test_a_bad_plugin_stops_the_run_with_one_line(source, fragment, tmp_path, monkeypatch, capsys):
    path = tmp_path / "bad_plugin.py"
    if source is not None:
        path.write_text(source)
    monkeypatch.setattr("verification.engine.runner.run_check", lambda *a, **k: pytest.fail("a check ran"))
    assert cli.main(["verify", "--plugin", str(path)]) == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_module_name_plugin(tmp_path, monkeypatch, unregister, capsys):
    (tmp_path / "my_claims_pkg").mkdir()
    (tmp_path / "my_claims_pkg" / "__init__.py").write_text(EXAMPLE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert plugins.load_plugin("my_claims_pkg") == [CHECK_ID]
    assert plugins.load_plugin("my_claims_pkg") == [CHECK_ID]  # loading twice registers once


def test_the_api_is_complete():
    for name in ("Check", "register", "RunContext", "CheckResult", "attention_cases", "explore", "reference",
                 "relative_tolerance", "enable_x64", "run_check", "load_plugin"):
        assert name in api.__all__ and hasattr(api, name), name
    assert not hasattr(api.reference, "ik") and "iclkd_jax" not in api.reference.__dict__
