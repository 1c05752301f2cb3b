"""The run journal and ``--resume`` (verification/engine/journal.py): killed runs resume to the same report.

The runs are real ``iclkd verify`` processes on the smoke profile: one cheap built-in check
(lemma-eta) and four slow stand-in checks from ``_journal_plugin.py``, which sleep long enough to be
killed in flight and log when they start and end, so the tests know which units ran in which run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verification.engine import journal as J
from verification.io.report import strip_timing

REPO = Path(__file__).parents[2]
PLUGIN = str(Path(__file__).with_name("_journal_plugin.py"))
IDS = ["lemma-eta", "slow-a", "slow-b", "slow-c", "slow-d"]
PLUGIN_IDS = set(IDS[1:])


def _args(report: Path, *extra: str, ids=IDS) -> list[str]:
    return ["verify", "--profile", "smoke", "--plugin", PLUGIN, "--only", *ids, "--no-progress", "--json",
            str(report), *extra]


def _env(unit_s: float, log: Path | None = None, root: Path = REPO) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
               ICLKD_TEST_UNIT_S=str(unit_s))
    env.pop("ICLKD_TEST_UNIT_LOG", None)
    if log is not None:
        env["ICLKD_TEST_UNIT_LOG"] = str(log)
    for name in ("ICLKD_COORDINATOR", "ICLKD_NUM_PROCESSES", "ICLKD_PROCESS_ID", "ICLKD_DISTRIBUTED"):
        env.pop(name, None)
    return env


def _run(argv: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verification", *argv], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def _journaled(folder: Path) -> set[str]:
    """The units with a valid entry in the journal (their labels)."""
    found = set()
    for path in (folder / "units").glob("*.json"):
        entry, _ = J.read_entry(path)
        if entry is not None:
            found.add(entry["label"])
    return found


def _started(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [line.split()[1] for line in log.read_text().splitlines() if line.startswith("start ")]


def _report(path: Path) -> dict:
    return strip_timing(json.loads(path.read_text()))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """An uninterrupted run: its report ``r.json`` and journal ``r.json.journal`` (copied by the tests that need one)."""
    folder = tmp_path_factory.mktemp("reference")
    done = _run(_args(folder / "r.json"), _env(0))
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture(scope="module")
def reference(uninterrupted) -> dict:
    """The uninterrupted run's report, timing fields aside."""
    return _report(uninterrupted / "r.json")


def _kill_when_journaled(argv: list[str], env: dict[str, str], folder: Path, count: int) -> set[str]:
    """Starts ``iclkd ARGV`` in its own session and SIGKILLs the whole session once ``count`` units are journaled."""
    with open(folder.parent / "killed.stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "verification", *argv], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while len(_journaled(folder)) < count:
            assert proc.poll() is None, f"the run ended ({proc.returncode}) before it could be killed"
            assert time.monotonic() < deadline, "the run journaled too little in 300 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return _journaled(folder)


@pytest.mark.parametrize("processes", [1, 2])
def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_report(processes, reference, tmp_path):
    report, journal = tmp_path / "r.json", tmp_path / "r.json.journal"
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    launch = ["launch", "-n", str(processes), "--"] if processes > 1 else []
    journaled = _kill_when_journaled([*launch, *_args(report)], _env(1.5, first), journal, count=2)
    assert not report.exists() and 2 <= len(journaled) < len(IDS)

    done = _run([*launch, *_args(report, "--resume")], _env(0, second))
    assert done.returncode == 0, done.stderr
    assert _report(report) == reference  # figure for figure, timing fields aside
    in_flight = set(_started(first)) - journaled
    run_twice = set(_started(first)) & set(_started(second))
    assert run_twice == in_flight and len(in_flight) <= processes  # at most the units in flight, one per process
    assert set(_started(second)) == PLUGIN_IDS - journaled  # every unit journaled before the kill is reused
    assert f"{len(journaled)} of {len(IDS)} unit(s) reused" in done.stderr


def test_sigterm_journals_the_unit_in_flight_and_exits_75(reference, tmp_path):
    report, journal, log = tmp_path / "r.json", tmp_path / "r.json.journal", tmp_path / "first.log"
    proc = subprocess.Popen([sys.executable, "-m", "verification", *_args(report)], env=_env(3, log), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while "slow-a" not in _started(log):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == J.EXIT_PREEMPTED == 75, err
    assert time.monotonic() - sent < 30  # the unit in flight finished; the next one did not start
    assert _journaled(journal) == {"lemma-eta", "slow-a"} and _started(log) == ["slow-a"]
    assert "remaining: slow-b, slow-c, slow-d" in err and "--resume" in err
    assert not report.exists()

    done = _run(_args(report, "--resume"), _env(0, tmp_path / "second.log"))
    assert done.returncode == 0, done.stderr
    assert _started(tmp_path / "second.log") == ["slow-b", "slow-c", "slow-d"]
    assert _report(report) == reference


def test_sigterm_past_the_grace_period_exits_75_without_the_unit(tmp_path):
    report, journal, log = tmp_path / "r.json", tmp_path / "r.json.journal", tmp_path / "first.log"
    argv = _args(report, "--grace", "1", ids=["slow-a", "slow-b"])
    proc = subprocess.Popen([sys.executable, "-m", "verification", *argv], env=_env(120, log), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while "slow-a" not in _started(log):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err
    assert time.monotonic() - sent < 20  # the grace period (1 s), not the unit's 120 s
    assert "(slow-a) did not finish within the 1 s grace period" in err
    assert "remaining: slow-a, slow-b" in err
    assert _journaled(journal) == set()


def test_a_corrupt_or_truncated_entry_is_rerun_with_one_warning(uninterrupted, reference, tmp_path):
    report, journal = tmp_path / "r.json", tmp_path / "r.json.journal"
    shutil.copytree(uninterrupted / "r.json.journal", journal)
    entries = {J.read_entry(p)[0]["label"]: p for p in (journal / "units").glob("*.json")}
    truncated = entries["slow-b"].read_bytes()
    entries["slow-b"].write_bytes(truncated[: len(truncated) // 2])
    corrupt = json.loads(entries["slow-c"].read_text())
    corrupt["result"]["worst"] += 0.5  # still valid JSON: only the checksum tells
    entries["slow-c"].write_text(json.dumps(corrupt))

    log = tmp_path / "second.log"
    done = _run(_args(report, "--resume"), _env(0, log))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2
    assert any("(slow-b) is truncated or corrupt" in w for w in warnings)
    assert any("(slow-c) is corrupt (its checksum does not match" in w for w in warnings)
    assert sorted(_started(log)) == ["slow-b", "slow-c"]
    assert _report(report) == reference


def test_resuming_with_other_arguments_is_refused_naming_the_difference(tmp_path):
    report = tmp_path / "r.json"
    journal = tmp_path / "r.json.journal"
    J.write_durably(journal / "run.json", json.dumps({
        "format": J.FORMAT, "command": "verify", "arguments": {"profile": "smoke", "seed": 0},
        "selection": {"only": ["slow-a"], "plugin": [PLUGIN], "real_model": None, "certify": False}}))
    done = _run(_args(report, "--resume", "--seed", "7", ids=["slow-a"]), _env(0))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("plugin ")  # the plugin's line, then the one-line refusal
    assert "--resume with other arguments" in lines[1] and "seed 0 -> 7" in lines[1]
    assert not (journal / "units").exists()  # nothing ran


def test_a_changed_source_reruns_exactly_the_units_its_scope_covers(tmp_path):
    """A check's own module is its unit scope; iclkd_jax/ (the library scope) is covered by every unit."""
    root = tmp_path / "copy"
    for package in ("iclkd_jax", "verification"):
        shutil.copytree(REPO / package, root / package)  # with __pycache__: valid for the copied sources too
    report = tmp_path / "r.json"
    ids = ["lemma-eta", "slow-a"]
    done = _run(_args(report, ids=ids), _env(0, root=root), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    first = _report(report)

    with open(root / "verification" / "statements" / "lemma_eta" / "check.py", "a") as handle:
        handle.write("\n# an edit that changes nothing but the source\n")
    log = tmp_path / "check.log"
    done = _run(_args(report, "--resume", ids=ids), _env(0, log, root), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 of 2 unit(s) reused" in done.stderr and _started(log) == []  # slow-a reused
    assert "run lemma-eta: code changed: unit (the unit's own code)" in done.stderr

    with open(root / "iclkd_jax" / "__init__.py", "a") as handle:
        handle.write("\n# an edit that changes nothing but the source\n")
    log = tmp_path / "library.log"
    done = _run(_args(report, "--resume", ids=ids), _env(0, log, root), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "0 of 2 unit(s) reused" in done.stderr and _started(log) == ["slow-a"]
    assert "run slow-a: code changed: library (iclkd_jax/)" in done.stderr
    assert _report(report) == first


# ------------------------------------------------------------------------------ the pieces, in process


def test_entries_are_checked_and_written_atomically(tmp_path):
    journal = J.Journal(tmp_path, "verify", {"profile": "smoke", "seed": 0})
    unit = J.Unit("check/x", "x", scopes=("reference",))
    journal.record(unit, {"worst": float("nan"), "figures": {"inf": float("inf")}})
    entry, problem = J.read_entry(journal.path(unit))
    assert problem is None and entry["result"]["figures"]["inf"] == float("inf")
    assert [p.name for p in journal.path(unit).parent.iterdir()] == [journal.path(unit).name]  # no temporary file
    assert J.read_entry(tmp_path / "absent.json") == (None, None)
    journal.path(unit).write_text(journal.path(unit).read_text()[:-10])
    assert "truncated or corrupt" in J.read_entry(journal.path(unit))[1]


def test_rerun_reasons_name_what_changed():
    base = {"command": "verify", "arguments": {"profile": "smoke", "seed": 0}, "unit": "check/x",
            "code": {"library": "a", "reference": "b"}, "versions": {"jax": "0.4.30", "numpy": "2.0"}}
    assert J.rerun_reason(base, dict(base)) is None
    assert J.rerun_reason(base, {**base, "arguments": {"profile": "smoke", "seed": 1}}) == \
        "arguments changed: seed 0 -> 1"
    assert J.rerun_reason(base, {**base, "code": {"library": "c", "reference": "b"}}) == \
        "code changed: library (iclkd_jax/)"
    assert J.rerun_reason(base, {**base, "versions": {"jax": "0.4.31", "numpy": "2.0"}}) == \
        "versions changed: jax 0.4.30 -> 0.4.31"


def test_resume_needs_a_journal(capsys):
    from verification import cli

    assert cli.main(["verify", "--only", "lemma-eta", "--resume"]) == 2
    assert "--resume needs a journal" in capsys.readouterr().err


# ------------------------------------------------------------------------------ the other commands


def test_experiment_resume_reuses_a_journaled_experiment(tmp_path, monkeypatch, capsys):
    import experiments.mmd_shift as mmd_shift
    from experiments.common import Result
    from verification import cli

    calls = []

    def fake(opts):
        calls.append(opts.seed)
        return Result(name="mmd-shift", data={"value": float("nan"), "seed_used": opts.seed}, markdown="# fake\n")

    monkeypatch.setattr(mmd_shift, "run", fake)
    argv = ["experiment", "mmd-shift", "--out", str(tmp_path), "--no-plots", "--quiet"]
    assert cli.main(argv) == 0
    first = (tmp_path / "mmd-shift.json").read_text()
    (tmp_path / "mmd-shift.json").unlink()
    assert cli.main([*argv, "--resume"]) == 0
    assert calls == [0]  # reused, not run again
    assert (tmp_path / "mmd-shift.json").read_text() == first
    assert "reused from the journal" in capsys.readouterr().out
    assert cli.main([*argv, "--resume", "--seed", "1"]) == 2  # other arguments: refused
    assert "seed 0 -> 1" in capsys.readouterr().err and calls == [0]


def test_tightness_resume_reuses_journaled_cells_and_reruns_them_when_benchmarks_change(tmp_path, monkeypatch):
    tightness = pytest.importorskip("benchmarks.tightness")
    from verification.statements.thm_4_2 import tightness as cells_42

    computed = []
    original = cells_42.compute
    monkeypatch.setattr(cells_42, "compute", lambda spec, seed: computed.append(spec) or original(spec, seed))
    argv = ["--tiny", "--out", str(tmp_path), "--only", "thm-4.2", "--no-progress", "--no-plots"]
    assert tightness.main(argv) == 0
    first, n = json.loads((tmp_path / "tightness.json").read_text()), len(computed)
    assert n > 0 and len(list((tmp_path / "journal" / "units").glob("*.json"))) == n
    assert tightness.main([*argv, "--resume"]) == 0
    again = json.loads((tmp_path / "tightness.json").read_text())
    assert len(computed) == n and again["rows"] == first["rows"] and again["meta"]["cells_loaded"] == n
    monkeypatch.setitem(J._scope_hashes, "benchmarks", "another source")  # as if benchmarks/ had been edited
    assert tightness.main([*argv, "--resume"]) == 0
    assert len(computed) == 2 * n  # every cell covers benchmarks/: all rerun
    assert json.loads((tmp_path / "tightness.json").read_text())["rows"] == first["rows"]


def test_search_resume_reuses_journaled_targets_and_writes_the_same_file(tmp_path, monkeypatch):
    from verification import cli
    from verification.search import ascent as adversary

    searched = []

    def fake_search(target, *, budget, seed, restarts):  # the wiring under test, not the ascent
        searched.append(target.name)
        return adversary.SearchResult(
            target=target.name, description=target.description, ratio_label=target.ratio_label, bound=target.bound,
            best_ratio=0.5, objective_ratio=0.5, agreement=0.0, best_case={"z": [1.0, 2.0]},
            remeasured={"ratio": 0.5, "b": 1.0, "a": float("inf")}, evaluations=budget, restarts=1, steps=budget,
            random_best_ratio=0.25, random_remeasured={"ratio": 0.25}, trajectory=[0.5] * 8,
            random_trajectory=[0.25] * 8, final_ratios=[0.5], seed=seed, elapsed_s=0.0)

    monkeypatch.setattr("verification.engine.search.run_search", fake_search)
    report = tmp_path / "s.json"
    assert cli.main(["search", "thm-4.2", "--budget", "8", "--json", str(report)]) == 0
    first, n = report.read_text(), len(searched)
    entries = sorted((tmp_path / "s.json.journal" / "units").glob("*.json"))
    entries[0].unlink()  # as if the run had been killed before that target was journaled
    assert cli.main(["search", "thm-4.2", "--budget", "8", "--json", str(report), "--resume"]) == 0
    assert len(searched) == n + 1 and report.read_text() == first  # byte for byte, key order included


def test_a_checkpointed_step_is_reused_only_by_its_own_check_mutant_and_fingerprint(tmp_path):
    from verification.core.model import PROFILES, RunContext

    unit = J.Unit("mutant/x/m", "x m", scopes=("reference",))
    baseline, mutant = (RunContext(PROFILES["smoke"], 0, "x", m) for m in (None, "m"))
    calls = []

    def step(value):
        return lambda: calls.append(value) or {"v": value, "array": __import__("numpy").arange(2.0)}

    fresh = J.Journal(tmp_path, "verify --self-test", {"seed": 0})
    with J._in_flight(fresh, unit):  # a self-test unit runs the baseline and the mutant: their steps keep apart
        assert J.checkpoint(baseline, "s", step(1)) == {"v": 1, "array": [0.0, 1.0]}
        assert J.checkpoint(mutant, "s", step(2))["v"] == 2
    resumed = J.Journal(tmp_path, "verify --self-test", {"seed": 0}, resume=True)
    with J._in_flight(resumed, unit):
        assert J.checkpoint(baseline, "s", step(3))["v"] == 1 and J.checkpoint(mutant, "s", step(4))["v"] == 2
    other = J.Journal(tmp_path, "verify --self-test", {"seed": 1}, resume=True)  # another fingerprint
    with J._in_flight(other, unit):
        assert J.checkpoint(baseline, "s", step(5))["v"] == 5
    assert calls == [1, 2, 5]
    assert J.checkpoint(baseline, "s", step(6)) == {"v": 6, "array": [0.0, 1.0]}  # no journal: computed, plain


def test_launch_forwards_sigterm_and_each_process_journals_its_unit_in_flight(tmp_path):
    report, journal, log = tmp_path / "r.json", tmp_path / "r.json.journal", tmp_path / "first.log"
    argv = ["launch", "-n", "2", "--", *_args(report, ids=["slow-a", "slow-b", "slow-c", "slow-d"])]
    proc = subprocess.Popen([sys.executable, "-m", "verification", *argv], env=_env(4, log), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while len(_started(log)) < 2:  # one unit in flight in each process
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert _journaled(journal) == set(_started(log)) == {"slow-a", "slow-b"}
    # process 0 says what it sees journaled when it stops (process 1 may still be journaling slow-b)
    assert "slow-c, slow-d; rerun the same command with --resume" in err and "remaining: slow-a" not in err


def test_self_test_resume_reruns_only_the_mutants_not_journaled(tmp_path):
    report, journal = tmp_path / "s.json", tmp_path / "s.json.journal"
    argv = ["verify", "--self-test", "--profile", "smoke", "--plugin", PLUGIN, "--only", "slow-a", "slow-b",
            "--json", str(report)]
    done = _run(argv, _env(0))
    assert done.returncode == 0, done.stderr
    first = report.read_text()
    entries = {J.read_entry(p)[0]["label"]: p for p in (journal / "units").glob("*.json")}
    assert set(entries) == {"slow-a shifted", "slow-b shifted"}
    entries["slow-b shifted"].unlink()
    log = tmp_path / "second.log"
    done = _run([*argv, "--resume"], _env(0, log))
    assert done.returncode == 0, done.stderr
    assert _started(log) == ["slow-b", "slow-b"]  # its baseline and its mutant; slow-a's mutant reused
    assert report.read_text() == first  # the self-test report has no timing field: byte for byte
