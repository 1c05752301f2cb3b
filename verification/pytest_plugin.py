"""The checks as pytest items: ``pytest --iclkd`` (registered through the ``pytest11`` entry point ``iclkd``).

With ``--iclkd``, pytest collects every registered check as one test item named by its id
(``iclkd::thm-4.1``): the built-in checks, the installed plugins (entry points ``iclkd.checks``), the
files and modules given with ``--iclkd-plugin`` (repeatable), and any check that the project's own
``conftest.py`` registers with :func:`verification.api.register`. They run beside the project's own tests
(select them alone with ``-k iclkd`` or ``--iclkd-only ID ...``).

The outcome is the verdict (:func:`verification.engine.runner.run_check`, float64, an exception inside a check
is status ``error``): ``holds``, ``survives`` and ``refuted`` pass (a refuted conjecture is the suite's
finding, not a failure), ``violated`` and ``error`` fail with the check's summary as the message (and
the traceback of an ``error``), ``inconclusive`` is skipped with its summary.

Options: ``--iclkd-profile`` (smoke, quick, default, thorough; default ``quick``: a test suite's budget),
``--iclkd-seed`` (default 0), ``--iclkd-only ID [ID ...]``, ``--iclkd-plugin MODULE_OR_FILE``.

Off unless asked for: without ``--iclkd`` the plugin only registers its options, and nothing of the
suite (JAX included) is imported.
"""

from __future__ import annotations

from pathlib import Path

import pytest

#: the profiles of ``iclkd verify`` (verification.core.model.PROFILES; listed here so that registering the
#: options imports nothing)
PROFILES = ("smoke", "quick", "default", "thorough")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("iclkd", "iclkd-jax checks as test items")
    group.addoption("--iclkd", action="store_true", default=False,
                    help="collect every registered iclkd check (built-in, installed and --iclkd-plugin) as a test item")
    group.addoption("--iclkd-profile", choices=PROFILES, default="quick",
                    help="how hard the checks look (default: quick)")
    group.addoption("--iclkd-seed", type=int, default=0, help="the checks' PRNG seed (default 0)")
    group.addoption("--iclkd-only", nargs="+", action="extend", default=[], metavar="ID",
                    help="collect only these check ids")
    group.addoption("--iclkd-plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                    help="load checks from a module or .py file first (repeatable)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "iclkd: an iclkd-jax check collected by --iclkd")
    if not config.getoption("iclkd"):
        return
    from verification.core.errors import PluginError
    from verification.engine.plugins import all_checks, load_plugin

    all_checks()  # the built-in checks first: a plugin cannot take their ids
    for spec in dict.fromkeys(config.getoption("iclkd_plugin")):
        path = Path(spec).expanduser()
        if spec.endswith(".py") and not path.is_absolute():  # relative to where pytest was started
            spec = str(config.invocation_params.dir / path)
        try:
            load_plugin(spec)
        except PluginError as err:
            raise pytest.UsageError(f"--iclkd-plugin: {err}") from None


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect: they see the checks too
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("iclkd"):
        return
    items.extend(IclkdChecks.from_parent(session, name="iclkd", nodeid="iclkd").collect())


class CheckFailed(Exception):
    """A check whose verdict is ``violated`` or ``error``; the message is its summary."""


class IclkdChecks(pytest.Collector):
    """The registered checks (after ``--iclkd-only``), one :class:`CheckItem` each, in report order."""

    def collect(self) -> list[CheckItem]:
        from verification.engine.plugins import all_checks

        checks = all_checks()
        only = list(dict.fromkeys(self.config.getoption("iclkd_only")))
        unknown = [cid for cid in only if cid not in checks]
        if unknown:
            raise pytest.UsageError(f"--iclkd-only: unknown check id(s) {', '.join(unknown)}; known: "
                                    f"{', '.join(checks)}")
        return [CheckItem.from_parent(self, name=cid, kind=checks[cid].kind) for cid in (only or checks)]


class CheckItem(pytest.Item):
    """One check: runs it with the session's profile and seed and turns its verdict into the outcome."""

    def __init__(self, *, kind: str, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind
        self.add_marker(pytest.mark.iclkd)

    def runtest(self) -> None:
        from verification.engine.runner import run_check

        result = run_check(self.name, profile=self.config.getoption("iclkd_profile"),
                           seed=self.config.getoption("iclkd_seed"))
        self.user_properties.extend([("status", result.status), ("worst", result.worst), ("cases", result.cases)])
        if result.status in ("violated", "error"):
            detail = result.figures.get("traceback", "") if result.status == "error" else ""
            raise CheckFailed(f"{self.name} ({result.kind}) {result.status}: {result.summary}"
                              + (f"\n{detail}" if detail else ""))
        if result.status == "inconclusive":
            pytest.skip(f"{self.name} inconclusive: {result.summary}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"iclkd {self.kind} {self.name}"
