"""``pytest --iclkd``: the checks as test items in another project's test suite (verification/pytest_plugin.py).

A temporary project with its own ``conftest.py``, its own test and a claims file holding two plugin
checks written as the README teaches (one that holds, one whose claim is false): ``pytest --iclkd
--iclkd-plugin claims.py`` collects both as items named by their ids, passes the first and fails the
second with its summary; ``--iclkd-only`` selects; without ``--iclkd`` nothing is collected and JAX is
not imported.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

import pytest

from verification.core.registry import REGISTRY
from verification.engine import plugins
from verification.engine.plugins import all_checks

# the built-in checks imported before any pytester: it restores sys.modules after each test, and a check module
# imported again would register its check a second time
all_checks()

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]

CLAIMS = '''
"""Two claims of a project of its own: an identity that holds and one that does not."""

import numpy as np

from verification import api


class _Claim(api.Check):
    kind = "lemma"
    mutants = {}
    power = 2

    def run(self, ctx):
        x = np.random.default_rng(ctx.seed).standard_normal(64)
        error = np.abs(np.exp(np.log1p(x ** 2)) - (1 + x ** self.power)).max() / (1 + x ** 2).max()
        tolerance = 8 * np.finfo(np.float64).eps
        return self.result(ctx, status="holds" if error <= tolerance else "violated", cases=x.size,
                           worst=float(error / tolerance), worst_label="max error/tolerance", tolerance=1.0,
                           summary=f"exp(log1p(x^2)) = 1 + x^{self.power} to {error:.1e} over {x.size} cases")


@api.register
class Holds(_Claim):
    id = "proj-log1p-holds"
    title = "exp(log1p(x^2)) = 1 + x^2"


@api.register
class Fails(_Claim):
    id = "proj-log1p-false"
    title = "exp(log1p(x^2)) = 1 + x^3 (false)"
    power = 3
'''

CONFTEST = '''
import pytest


@pytest.fixture
def project_value():
    return 42
'''

OWN_TEST = '''
import sys


def test_project_own(project_value):
    assert project_value == 42


def test_suite_not_imported_without_the_flag(request):
    if not request.config.getoption("iclkd"):
        assert not {"jax", "iclkd_jax", "verification.statements", "verification.engine.runner"} & set(sys.modules)
'''

IDS = ("proj-log1p-holds", "proj-log1p-false")


def _plugin_args() -> list[str]:
    """``-p verification.pytest_plugin`` unless the installed distribution's ``pytest11`` entry point loads it."""
    installed = any(ep.value == "verification.pytest_plugin" for ep in metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "verification.pytest_plugin"]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_own=OWN_TEST)
    (pytester.path / "claims.py").write_text(CLAIMS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    yield pytester
    for cid in IDS:
        REGISTRY.pop(cid, None)
    for name in [n for n in sys.modules if n.startswith("iclkd_plugin_claims")]:
        del sys.modules[name]
    plugins._PLUGIN_CHECKS.clear()


def test_checks_are_items_and_the_verdict_is_the_outcome(project):
    result = project.runpytest(*_plugin_args(), "--iclkd", "--iclkd-plugin", "claims.py", "--iclkd-only", *IDS,
                               "--iclkd-profile", "smoke", "-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*proj-log1p-false (lemma) violated: exp(log1p(x^2)) = 1 + x^3 to * over 64 cases*",
                                 "*PASSED iclkd::proj-log1p-holds*", "*FAILED iclkd::proj-log1p-false*"])
    assert "PASSED test_own.py::test_project_own" in result.stdout.str()


def test_collect_only_lists_every_registered_check(project):
    result = project.runpytest(*_plugin_args(), "--iclkd", "--iclkd-plugin", "claims.py", "--collect-only", "-q",
                               "-p", "no:cacheprovider")
    listed = result.stdout.str()
    for cid in ("thm-3.1a", "thm-4.1", "conj-4.1", *IDS):  # built-in and plugin checks alike
        assert f"iclkd::{cid}" in listed
    assert "test_own.py::test_project_own" in listed


def test_unknown_id_is_a_usage_error(project):
    result = project.runpytest(*_plugin_args(), "--iclkd", "--iclkd-only", "no-such-check", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown check id(s) no-such-check" in result.stderr.str()


def test_off_unless_asked_for(project):
    """Without --iclkd: the project's own tests only, in a fresh interpreter that never imports JAX or the suite."""
    result = project.runpytest_subprocess(*_plugin_args(), "-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=2)
    assert "iclkd::" not in result.stdout.str()
