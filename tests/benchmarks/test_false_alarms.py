"""``iclkd bench false-alarms``: the margins and counts on synthetic results, the command line, processes."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import false_alarms as fa
from verification import cli
from verification.core import protocol
from verification.core.model import Check, CheckResult
from verification.core.registry import REGISTRY, register
from verification.engine import runner
from verification.io.command import ExitStatus, seeds
from verification.io.report import strip_timing

ROOT = Path(__file__).resolve().parents[2]


def _result(cid, status="holds", worst=None, tolerance=None, figures=None, kind="theorem"):
    return CheckResult(id=cid, kind=kind, status=status, cases=1, worst=worst, worst_label="w", tolerance=tolerance,
                       figures=figures or {}, summary=f"{cid} {status}")


def _growth(score: float, growth: float) -> dict:
    return {"max_score": score, "max_agreement_in_round_off_units": {"mmd2_blocked": 0.01},
            "linear_growth": {"translation": {"score": growth, "rejected_draws": {"unresolved": 1}},
                              "scale": {"score": growth / 2, "rejected_draws": {"unresolved": 2}}}}


def test_seeds_argument_reads_ranges_lists_and_mixes():
    assert seeds("0..3") == [0, 1, 2, 3]
    assert seeds("2,0,2") == [0, 2]
    assert seeds("0..2,7") == [0, 1, 2, 7]
    for bad in ("3..1", "a..b", "-1", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            seeds(bad)
    assert fa.format_seeds([7, 0, 1, 2, 9, 10]) == "0..2,7,9..10"


def test_record_reads_each_checks_margin():
    plain = fa.record(_result("thm-3.1a", worst=0.25, tolerance=1.0))
    assert plain["margin"] == 0.25 and plain["margin_component"] == "worst/tolerance"
    # thm-4.1: the growth score, not its `worst` (a bound ratio that is ~1 by the theorem's attainment)
    growth = fa.record(_result("thm-4.1", worst=0.9999, tolerance=1.0 + 1e-12, figures=_growth(0.4, 0.4)))
    assert growth["margin"] == 0.4 and growth["margin_component"] == "linear growth"
    assert growth["components"] == {"linear growth": 0.4, "every score": 0.4, "blocked mmd2 agreement": 0.01}
    assert growth["rejected"] == {"unresolved": 3}  # summed over the families
    # a check without its own definition: worst / tolerance
    plugin = fa.record(_result("my-plugin", worst=3.0, tolerance=4.0))
    assert plugin["margin"] == 0.75 and fa.margin_of("my-plugin") is fa.GENERIC_MARGIN
    # a NaN anywhere makes the margin infinite and is named
    nan = fa.record(_result("thm-4.2", status="violated", figures={"max_score": math.nan}))
    assert nan["margin"] == math.inf and nan["nonfinite"] == ["every score"] and nan["summary"] == "thm-4.2 violated"
    # a check that raised has no margin; nor does one whose result carries none of its figures
    assert fa.record(_result("thm-3.1a", status="error", worst=None))["margin"] is None
    assert fa.record(_result("thm-4.2", figures={}))["margin"] is None


def test_aggregate_counts_margins_and_their_seeds():
    runs = {
        3: [_result("thm-4.1", figures=_growth(0.5, 0.5)), _result("conj-4.1", "refuted", kind="conjecture"),
            _result("thm-3.1a", "error")],
        1: [_result("thm-4.1", "violated", figures=_growth(1.2, 1.2)),
            _result("conj-4.1", "inconclusive", kind="conjecture"), _result("thm-3.1a", worst=0.5, tolerance=1.0)],
        2: [_result("thm-4.1", figures=_growth(1.2, 0.3)), _result("conj-4.1", "survives", kind="conjecture"),
            _result("thm-3.1a", "violated", worst=0.5, tolerance=1.0)],
    }
    seed_runs = [{"seed": s, "elapsed_s": 1.0, "runs": [fa.record(r) for r in results]} for s, results in runs.items()]
    per_check = fa.aggregate(seed_runs, ["thm-3.1a", "thm-4.1", "conj-4.1"])
    assert list(per_check) == ["thm-3.1a", "thm-4.1", "conj-4.1"]
    growth = per_check["thm-4.1"]
    assert growth["runs"] == 3 and growth["counts"] == {"violated": 1, "holds": 2}
    assert growth["seeds"] == {"violated": [1], "error": [], "inconclusive": []}
    # the tie at 1.2 (seeds 1 and 2) goes to the smallest seed, whatever order the seeds finished in
    assert (growth["margin"], growth["margin_seed"], growth["margin_component"]) == (1.2, 1, "linear growth")
    assert growth["components"]["linear growth"] == {"margin": 1.2, "seed": 1}
    assert growth["components"]["blocked mmd2 agreement"] == {"margin": 0.01, "seed": 1}
    assert growth["rejected"] == {"unresolved": 9}  # summed over the seeds
    plain = per_check["thm-3.1a"]
    assert plain["counts"] == {"error": 1, "holds": 1, "violated": 1}
    assert plain["seeds"]["error"] == [3] and plain["margin"] == 0.5
    assert plain["violated_outside_margin"] == [2]  # violated by a judgement the margin does not measure
    conj = per_check["conj-4.1"]
    assert conj["counts"] == {"inconclusive": 1, "survives": 1, "refuted": 1} and conj["seeds"]["inconclusive"] == [1]
    assert conj["margin"] is None  # no agreement figures in these synthetic results

    report = fa.build_report(seed_runs, profile="quick", seeds=[1, 2, 3], ids=list(per_check), commit="abc",
                             elapsed_s=3.0)
    assert (report["violated"], report["error"], report["inconclusive"]) == (2, 1, 1)
    assert [s["seed"] for s in report["seed_runs"]] == [1, 2, 3] and report["complete"]
    text, md = fa.table(report), fa.markdown(report)
    assert "seed 1 thm-4.1 violated: thm-4.1 violated" in text and "thm-3.1a at seed(s) 2" in text
    assert "| thm-4.1 | theorem | 3 | 1 | 0 | 0 | holds 2 | 1.2 | 1 | linear growth | 9 |" in md
    assert "rejected by the generator (not judged), over every seed: thm-4.1: 9 unresolved" in text


def _bench(*args: str) -> int:
    return cli.main(["bench", "false-alarms", *args])


def test_command_line_on_the_smoke_profile(tmp_path, capsys):
    out, md = tmp_path / "sweep.json", tmp_path / "sweep.md"
    assert _bench("--seeds", "1..2", "--profile", "smoke", "--only", "lemma-eta", "thm-linear",
                  "--json", str(out), "--markdown", str(md)) == 0
    captured = capsys.readouterr()
    assert "[2/2] seed 2" in captured.err and "lemma-eta" in captured.out and "margin =" in captured.out
    report = json.loads(out.read_text())
    assert report["complete"] and report["seeds"] == "1..2" and report["checks"] == ["lemma-eta", "thm-linear"]
    assert (report["violated"], report["error"]) == (0, 0)
    for cid in ("lemma-eta", "thm-linear"):
        entry = report["per_check"][cid]
        assert entry["runs"] == 2 and entry["counts"] == {"holds": 2}
        assert 0 < entry["margin"] < 1 and entry["margin_seed"] in (1, 2)
    assert "| lemma-eta | lemma | 2 | 0 | 0 | 0 | holds 2 |" in md.read_text()
    assert _bench("--seeds", "2..1") == 2
    assert _bench("--seeds", "1", "--only", "no-such-check") == 2
    assert "no-such-check" in capsys.readouterr().err


class _Raises(Check):
    id = "test-false-alarms-raises"
    kind = "theorem"
    title = "a check that raises"

    def run(self, ctx):
        raise ZeroDivisionError("planted")


class _ViolatedAtOddSeeds(_Raises):
    id = "test-false-alarms-violated"

    def run(self, ctx):
        return self.result(ctx, status="violated" if ctx.seed % 2 else "holds", cases=1, worst=1.0 + ctx.seed % 2,
                           worst_label="observed/bound", tolerance=1.0)


@pytest.fixture
def planted():
    for cls in (_Raises, _ViolatedAtOddSeeds):
        register(cls)
    yield
    for cls in (_Raises, _ViolatedAtOddSeeds):
        REGISTRY.pop(cls.id)


def test_exit_statuses_and_the_partial_report_of_an_interrupted_sweep(planted, tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.json"
    assert _bench("--seeds", "0..3", "--only", _ViolatedAtOddSeeds.id, "--json", str(out)) == ExitStatus.VIOLATED
    entry = json.loads(out.read_text())["per_check"][_ViolatedAtOddSeeds.id]
    assert entry["seeds"]["violated"] == [1, 3] and (entry["margin"], entry["margin_seed"]) == (2.0, 1)
    assert _bench("--seeds", "0", "--only", _Raises.id, "--json", str(out)) == ExitStatus.ERROR
    assert json.loads(out.read_text())["per_check"][_Raises.id]["counts"] == {"error": 1}
    assert "seed 0 test-false-alarms-raises error: check raised ZeroDivisionError: planted" in capsys.readouterr().out

    real, calls = runner.run_check, []

    def interrupt_third(check_id, **kwargs):
        calls.append(check_id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(check_id, **kwargs)

    monkeypatch.setattr(runner, "run_check", interrupt_third)
    assert _bench("--seeds", "0..5", "--only", _ViolatedAtOddSeeds.id, "--json", str(out)) == ExitStatus.INTERRUPTED
    partial = json.loads(out.read_text())
    assert not partial["complete"] and partial["seeds_done"] == "0..1" and partial["violated"] == 1
    assert "interrupted after 2 seed(s)" in capsys.readouterr().err


def test_worker_processes_give_the_one_process_report(tmp_path):
    """--jobs 2: each worker runs its seeds in one process; the report is the in-process one (timing aside)."""
    args = ["--seeds", "1..3", "--profile", "smoke", "--only", "lemma-eta"]
    assert _bench(*args, "--json", str(tmp_path / "one.json")) == 0
    assert _bench(*args, "--jobs", "2", "--json", str(tmp_path / "two.json")) == 0
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert strip_timing(one) == strip_timing(two)


@pytest.mark.slow  # two launched processes, each compiling: ~20 s
def test_launch_gives_the_one_process_report(tmp_path, capfd):
    from verification.engine import distributed

    args = ["bench", "false-alarms", "--seeds", "1..3", "--profile", "smoke", "--only", "lemma-eta"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    one = subprocess.run([sys.executable, "-m", "verification", *args, "--json", str(tmp_path / "one.json")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    assert distributed.launch(2, [*args, "--json", str(tmp_path / "two.json")], env=env, init_timeout_s=120) == 0
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert strip_timing(one) == strip_timing(two)


#: the components each check's margin is read from (its false_alarm_margin hook): a check whose figures are
#: renamed would otherwise lose a component, or its whole margin, without notice
COMPONENTS = {
    "thm-3.1a": {"worst/tolerance"}, "lemma-eta": {"worst/tolerance"}, "thm-linear": {"worst/tolerance"},
    "thm-3.1b": {"taylor step over remainder", "explicit maps round off", "every judgement"},
    "lemma-features": {"taylor remainder", "slopes", "features vs reference", "unbiased deviation over allowance",
                       "variance deviation over allowance", "orthogonal-no-worse deviation over allowance",
                       "every judgement"},
    "thm-3.2": {"clopper pearson lower over delta", "reference agreement"},
    "conj-3.2": {"reference agreement"},
    "thm-4.1": {"linear growth", "every score", "blocked mmd2 agreement"},
    "thm-4.2": {"every score"},
    "conj-4.1": {"kernel agreement", "library checks"},
}


def _sweep_checks() -> tuple[list[str], list[str]]:
    """The registered checks split into the statements' own checks and the real-model ones."""
    from verification.engine.plugins import all_checks

    checks = all_checks()
    real = [cid for cid, check in checks.items() if protocol.offers(check, "real_model")]
    return [cid for cid in checks if cid not in real], real


def _assert_no_false_alarm(profile: str, seed_list: list[int], ids: list[str]) -> None:
    from verification.engine.plugins import all_checks

    report = fa.build_report(fa.sweep(seed_list, ids, profile), profile=profile, seeds=seed_list, ids=ids,
                             commit="test", elapsed_s=0.0)
    assert report["violated"] == 0 and report["error"] == 0, fa.table(report)
    # every built-in check has its own margin, read from every figure it is made of, at every seed it judged
    offering = {cid for cid in ids if protocol.offers(all_checks()[cid], "false_alarm_margin")}
    assert offering == set(COMPONENTS) & set(ids)
    for seed_run in report["seed_runs"]:
        for run in seed_run["runs"]:
            if run["id"] in COMPONENTS and run["status"] != "inconclusive":
                assert set(run["components"]) == COMPONENTS[run["id"]], (seed_run["seed"], run["id"], run["components"])


# The CI sweep: a proven statement is never violated and no check raises, at seeds other than the
# README's 0. All the seeds run in this process, so the programs compiled at the first are reused
# (quick: ~3 s a seed once compiled). Before the fixes of thm-4.1 (growth tolerance) and thm-4.2
# (reference overflow) it failed at quick seeds 4 and 5. The real-model checks cost several times a statement
# check per seed (thousands of per-head calls) and take from the seed only the order of their demonstrations and
# their token samples, so they sweep two of the six seeds; `iclkd bench false-alarms` sweeps them at every seed.
def test_small_sweep_of_the_quick_profile_has_no_false_alarm():
    statements, real = _sweep_checks()
    assert set(COMPONENTS) <= set(statements)
    _assert_no_false_alarm("quick", list(range(1, 7)), statements)
    _assert_no_false_alarm("quick", [1, 2], real)


@pytest.mark.slow  # the default profile: ~30 s a seed once compiled, ~60 s for the first
def test_small_sweep_of_the_default_profile_has_no_false_alarm():
    statements, real = _sweep_checks()
    _assert_no_false_alarm("default", [1, 2], statements + real)
