"""The source-mutation harness (``iclkd bench mutation``) and its catalogue."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from benchmarks import mutation
from benchmarks.mutation_catalogue import BY_ID, CATALOGUE, KINDS, Mutant, mirror_tests

ROOT = Path(__file__).resolve().parents[2]


def test_catalogue_is_large_varied_and_unique():
    assert len(CATALOGUE) >= 40
    assert len(BY_ID) == len(CATALOGUE), "mutant ids must be unique"
    assert {m.kind for m in CATALOGUE} == set(KINDS), "every kind of planted bug is represented"
    quick = [m for m in CATALOGUE if m.quick]
    assert {m.file for m in quick} == {m.file for m in CATALOGUE}, "--quick covers every mutated module"
    assert all(m.equivalent is None or len(m.equivalent) > 40 for m in CATALOGUE), "equivalents give a reason"


@pytest.mark.parametrize("mutant", CATALOGUE, ids=lambda m: m.id)
def test_every_mutant_still_applies_exactly_once(mutant: Mutant):
    """A refactor that moves or duplicates a snippet must be noticed (rewrite the entry, do not drop it)."""
    source = (ROOT / "iclkd_jax" / mutant.file).read_text()
    mutated = mutant.apply(source)
    assert mutated != source
    ast.parse(mutated)  # a mutant is a behaviour change, never a syntax error
    assert all((ROOT / p).exists() for p in mirror_tests(mutant))


def test_apply_refuses_a_missing_or_repeated_snippet():
    with pytest.raises(ValueError, match="occurs 0 times"):
        Mutant("x", "mmd.py", "no such text", "", "constant", "").apply("abc")
    with pytest.raises(ValueError, match="occurs 2 times"):
        Mutant("x", "mmd.py", "a", "b", "constant", "").apply("a a")


def test_killing_checks_judges_status_changes():
    base = mutation.RunOutcome({"t": "holds", "c": "refuted", "l": "holds"},
                               {"t": "theorem", "c": "conjecture", "l": "lemma"}, 0, 1.0)
    mutated = mutation.RunOutcome({"t": "violated", "c": "survives", "l": "inconclusive"}, base.kinds, 1, 1.0)
    assert mutation.killing_checks(base, mutated) == (["t", "c"], ["l"])
    assert mutation.killing_checks(base, base) == ([], [])


def test_command_line(capsys):
    from verification.io.command import Parser

    assert mutation.main(["--list"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(CATALOGUE)
    parser = Parser(prog="iclkd bench mutation")
    mutation.add_arguments(parser)
    args = parser.parse_args(["--quick", "--jobs", "2", "--pytest", "--checks", "thm-4.1"])
    assert args.quick and args.jobs == 2 and args.pytest == "all" and args.checks == ["thm-4.1"]
    assert args.profile == "quick"
    assert mutation.main(["--mutants", "no-such-mutant"]) == 2
    assert "no-such-mutant" in capsys.readouterr().err
    assert mutation.main(["--jobs", "0"]) == 2


def test_statement_lines_cover_the_whole_statement():
    source = "x = 1\ny = (2 +\n     3)\nz = 4\n"
    mutant = Mutant("m", "f.py", "3)", "4)", "constant", "")
    assert mutation.statement_lines(mutant, source) == {2, 3}


@pytest.mark.slow  # three verify subprocesses: ~25 s quiet, ~55 s contended
def test_end_to_end_on_two_mutants(tmp_path):
    """Two attention mutants against lemma-eta on the smoke profile: one killed, one not touching it."""
    out = tmp_path / "report.json"
    md = tmp_path / "report.md"
    assert mutation.main(["--mutants", "attention.eta-without-half", "linear.prediction-sign",
                          "--checks", "lemma-eta", "--profile", "smoke", "--json", str(out),
                          "--markdown", str(md)]) == 0
    report = json.loads(out.read_text())
    rows = {r["id"]: r for r in report["mutants"]}
    assert report["baseline"] == {"lemma-eta": "holds"}
    assert rows["attention.eta-without-half"]["killed_by"] == ["lemma-eta"]
    assert rows["attention.eta-without-half"]["statuses"]["lemma-eta"] == "violated"
    assert rows["linear.prediction-sign"]["killed_by"] == []  # lemma-eta never calls the linear module
    assert rows["linear.prediction-sign"]["reached"] is False  # so it is not even run
    assert report["summary"]["verify_kill_rate"] == 0.5
    assert report["summary"]["survivors"] == ["linear.prediction-sign"]
    assert "linear.prediction-sign" in md.read_text()
    # the working tree was never touched
    assert BY_ID["attention.eta-without-half"].snippet in (ROOT / "iclkd_jax" / "attention.py").read_text()


def test_merge_prefers_the_first_report_and_says_where_rows_come_from():
    def row(mid, killed):
        return {"id": mid, "equivalent": BY_ID[mid].equivalent, "killed_by": killed, "reached": True}

    new = {"commit": "new", "complete": True, "baseline": {"thm-3.1a": "holds"},
           "mutants": [row("attention.softmax-axis", ["thm-3.1a"])]}
    old = {"commit": "old", "complete": True, "baseline": {"thm-3.1a": "holds"},
           "mutants": [row("attention.softmax-axis", []), row("attention.entropy-sign", [])]}
    merged = mutation.merge([new, old])
    rows = {r["id"]: r for r in merged["mutants"]}
    assert rows["attention.softmax-axis"]["killed_by"] == ["thm-3.1a"] and "carried_from" not in rows["attention.softmax-axis"]
    assert rows["attention.entropy-sign"]["carried_from"] == "old"
    assert merged["summary"]["killed_by_verify"] == 1 and merged["summary"]["scored"] == 2


def _fake_verify(outcomes: dict[tuple[str | None, int], dict[str, str]], chosen: list[str]):
    """A stand-in for ``run_verify``: the statuses ``outcomes[(mutant applied to the copy, seed)]``."""
    kinds = {"lemma-eta": "lemma", "thm-linear": "theorem"}

    def run_verify(copy: Path, args, seed: int) -> mutation.RunOutcome:
        applied = [m for m in chosen if (copy / "iclkd_jax" / BY_ID[m].file).read_text()
                   != (ROOT / "iclkd_jax" / BY_ID[m].file).read_text()]
        statuses = outcomes[(applied[0] if applied else None, seed)]
        return mutation.RunOutcome(statuses, kinds, 0, 0.1)

    return run_verify


def test_across_seeds_a_mutant_is_killed_only_if_every_seed_kills_it(tmp_path, monkeypatch):
    """Fake verify runs: mutant a is killed at both seeds (by different checks), b at seed 0 only."""
    a, b = "attention.eta-without-half", "linear.prediction-sign"
    clean = {"lemma-eta": "holds", "thm-linear": "holds"}
    outcomes = {(None, 0): clean, (None, 1): clean,
                (a, 0): {"lemma-eta": "violated", "thm-linear": "holds"},
                (a, 1): {"lemma-eta": "violated", "thm-linear": "violated"},
                (b, 0): {"lemma-eta": "holds", "thm-linear": "violated"},
                (b, 1): {"lemma-eta": "holds", "thm-linear": "inconclusive"}}
    monkeypatch.setattr(mutation, "run_verify", _fake_verify(outcomes, [a, b]))
    monkeypatch.setattr(mutation, "check_imports_copy", lambda copy: None)
    out, md = tmp_path / "report.json", tmp_path / "report.md"
    assert mutation.main(["--mutants", a, b, "--seeds", "0,1", "--no-reach", "--json", str(out),
                          "--markdown", str(md)]) == 0
    report = json.loads(out.read_text())
    rows = {r["id"]: r for r in report["mutants"]}
    assert report["seeds"] == [0, 1] and report["seed"] is None
    assert report["baselines"] == {"0": clean, "1": clean}
    assert rows[a]["killed_by"] == ["lemma-eta", "thm-linear"] and rows[a]["killed_by_every_seed"] == ["lemma-eta"]
    assert rows[b]["killed_by"] == [] and rows[b]["killed_at_seeds"] == ["0"] and rows[b]["weakened"] == ["thm-linear"]
    assert rows[b]["per_seed"]["0"]["killed_by"] == ["thm-linear"]
    summary = report["summary"]
    assert summary["verify_kill_rate"] == 0.5 and summary["survivors"] == [b]
    assert summary["per_seed_kills"] == {"0": 2, "1": 1}
    assert summary["per_seed_kill_rate"] == {"0": 1.0, "1": 0.5}
    assert summary["per_check"]["lemma-eta"]["kills"] == 1 and summary["per_check"]["thm-linear"]["kills"] == 0
    text = md.read_text()
    assert "Per seed: seed 0 2/2 = 100.0 %; seed 1 1/2 = 50.0 %" in text and "killed at seed(s) 0 only" in text

    # the single-seed default keeps its report: one baseline, the flat per-mutant fields
    assert mutation.main(["--mutants", a, b, "--seed", "1", "--no-reach", "--json", str(out)]) == 0
    single = json.loads(out.read_text())
    rows = {r["id"]: r for r in single["mutants"]}
    assert single["seed"] == 1 and single["seeds"] == [1] and "per_seed_kills" not in single["summary"]
    assert "per_seed" not in rows[a] and rows[a]["killed_by"] == ["lemma-eta", "thm-linear"]
    assert rows[b]["killed_by"] == [] and rows[b]["statuses"] == outcomes[(b, 1)]
    # a kill carries over only between runs of the same seeds; --seed and --seeds exclude each other
    assert mutation.main(["--mutants", a, "--seeds", "0,1", "--skip-killed-in", str(out)]) == 2
    assert mutation.main(["--mutants", a, "--seed", "1", "--seeds", "0,1"]) == 2
