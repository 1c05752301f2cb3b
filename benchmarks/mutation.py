"""``iclkd bench mutation [--quick] [--json PATH]``: the source-mutation score of ``iclkd verify``.

Each mutant of :mod:`benchmarks.mutation_catalogue` (one planted bug in ``iclkd_jax/``) is applied, one at a
time, to a temporary copy of the repository (never to the working tree), and
``python -m verification verify --profile quick --json ...`` runs on that copy (``PYTHONPATH`` set to it,
the shared persistent XLA cache, a timeout). A check **kills** a mutant when its status differs from the
unmutated baseline's and the new status accuses the library: ``violated`` or ``error`` for a theorem or a
lemma, any change of verdict for a conjecture (``refuted`` <-> ``survives``), and any status change of a
check whose baseline was not clean. A run that crashes before writing its report, or runs past the
timeout, kills the mutant as a whole (``<crash>`` / ``<timeout>``). A change from ``holds`` to
``inconclusive`` is reported as *weakened*, not as a kill: the user was not told the library is wrong.

The kill rate excludes the mutants the catalogue declares equivalent (with the reason): they cannot
change any verdict. ``--seeds 0,1,2`` runs verify at each seed, each against that seed's own
unmutated baseline (and its own trace of executed lines), and counts a mutant as killed only if every
seed kills it, so no tolerance tuned to one seed can score; a check's own kills count a mutant only if
it kills it at every seed, and the report gives each seed's kill rate beside the across-seeds score.
Without ``--seeds`` the run is the single-seed one (``--seed``, default 0) and its report is unchanged.

``--pytest`` also runs the tests that mirror the mutated module
(``tests/iclkd_jax/test_<module>.py``) plus ``tests/verification`` on the same copy, for every mutant or
only for those verify lets through (``--pytest survivors``): together with verify this is the suite's
score.

Why not an existing tool. mutmut 3 (PyPI 3.8) generates every operator mutant of every function
(hundreds per module here, each needing one ~40 s verify run: days on 2 cores), switches them through a
trampoline inside the functions (which ``jax.jit`` traces once, so a switched mutant is baked into the
compiled cache), and only judges a test run by its exit code; mutmut 2 applies mutants in the working
tree. cosmic-ray (8.7) and mutatest (3.1) are operator-exhaustive too and judge by exit code. None lets
us say *which check* kills a mutant (``iclkd verify`` exits 0 when a conjecture's verdict flips), and
none keeps a curated catalogue of semantic bugs (a wrong normalisation, a wrong axis) small enough for
this budget. So the catalogue is curated and the harness (this module, ~300 lines) reads the verify
report per check.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import dataclasses
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.mutation_catalogue import BY_ID, CATALOGUE, Mutant, mirror_tests

ROOT = Path(__file__).resolve().parents[1]
#: what a mutated copy needs: the library, the checks, and (for --pytest) the tests
COPIED = ("iclkd_jax", "verification", "pyproject.toml")
COPIED_FOR_PYTEST = ("tests", "benchmarks", "experiments", "README.md", "docs")
ACCUSING = ("violated", "error")
CRASH, TIMEOUT = "<crash>", "<timeout>"
QUICK_PROFILE_TIMEOUT_S = 600  # a quick verify run takes ~40 s on a contended 2-core machine


@dataclasses.dataclass
class RunOutcome:
    """One ``iclkd verify`` run on one copy."""

    statuses: dict[str, str]
    kinds: dict[str, str]
    returncode: int | None
    elapsed_s: float
    failure: str | None = None  # CRASH or TIMEOUT when no report came back
    detail: str = ""


def _ignore(directory, names):
    return [n for n in names if n in ("__pycache__", ".pytest_cache", ".hypothesis") or n.endswith(".pyc")]


def make_copy(parent: Path, with_tests: bool, source_root: Path = ROOT) -> Path:
    """A fresh copy of the repository's code (no .git, no venv) under ``parent``."""
    root = Path(tempfile.mkdtemp(prefix="copy-", dir=parent))
    for name in COPIED + (COPIED_FOR_PYTEST if with_tests else ()):
        source = source_root / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=_ignore)
        elif source.exists():
            shutil.copy2(source, root / name)
    return root


def _environment(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # the shared persistent XLA cache (the CLI's default unless the user set one): unmutated functions hit it
    env.setdefault("ICLKD_CACHE_DIR", str(Path.home() / ".cache" / "iclkd-jax" / "xla"))
    return env


_LIVE: set[subprocess.Popen] = set()  # children to kill when the harness is interrupted


def _run(cmd: list[str], cwd: Path, timeout_s: float, env: dict | None | str = "copy") -> subprocess.CompletedProcess:
    """Runs ``cmd`` in ``cwd`` (with the copy's environment unless ``env=None``), capturing its output."""
    env = _environment(cwd) if env == "copy" else env
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        _LIVE.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            _LIVE.discard(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill_children(signum=None, frame=None):
    for proc in list(_LIVE):
        proc.kill()
    if signum is not None:
        raise KeyboardInterrupt


# Runs `python -m verification ARGS` recording which lines of the copy's iclkd_jax/ execute (tracing of a
# jitted function runs its Python once, so a line never executed cannot change any verdict).
_REACH_SCRIPT = """
import json, os, runpy, sys, threading
root, out = sys.argv[1], sys.argv[2]
sys.argv = ["verification"] + sys.argv[3:]
hits = {}
def local(frame, event, arg):
    if event == "line":
        hits.setdefault(frame.f_code.co_filename, set()).add(frame.f_lineno)
    return local
def call(frame, event, arg):
    if frame.f_code.co_filename.startswith(root):
        hits.setdefault(frame.f_code.co_filename, set()).add(frame.f_lineno)
        return local
    return None
sys.settrace(call)
threading.settrace(call)
try:
    runpy.run_module("verification", run_name="__main__", alter_sys=True)
finally:
    sys.settrace(None)
    with open(out, "w") as f:
        json.dump({os.path.relpath(k, root): sorted(v) for k, v in hits.items()}, f)
"""


def trace_reach(copy: Path, args, seed: int) -> tuple[RunOutcome, dict[str, set[int]]]:
    """The unmutated verify run (the baseline), recording the lines of each ``iclkd_jax/`` file it executes."""
    out, report = copy / "reach.json", copy / "verify-report.json"
    cmd = [sys.executable, "-c", _REACH_SCRIPT, str(copy / "iclkd_jax") + os.sep, str(out),
           *_verify_args(report, args, seed)]
    started = time.perf_counter()
    proc = _run(cmd, copy, args.timeout * 3)  # tracing slows the run
    baseline = _outcome(report, proc, time.perf_counter() - started)
    if not out.exists():
        raise RuntimeError(f"the traced baseline run wrote no line record: {proc.stderr[-800:]}")
    return baseline, {name: set(lines) for name, lines in json.loads(out.read_text()).items()}


def statement_lines(mutant: Mutant, source: str) -> set[int]:
    """The lines of the innermost statement(s) enclosing the mutated snippet (what must run for it to matter)."""
    start = source.index(mutant.snippet)
    first = source.count("\n", 0, start) + 1
    last = first + mutant.snippet.count("\n")
    lines = set(range(first, last + 1))
    for node in ast.walk(ast.parse(source)):
        simple = isinstance(node, ast.stmt) and not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.If, ast.For,
                                                                       ast.While, ast.With, ast.Try))
        if simple and node.lineno <= last and node.end_lineno >= first:
            lines |= set(range(node.lineno, node.end_lineno + 1))
    return lines


def check_imports_copy(copy: Path) -> None:
    """Refuses to run when ``PYTHONPATH`` would not make the copy's packages win over an installed one."""
    probe = "import iclkd_jax, verification; print(iclkd_jax.__file__); print(verification.__file__)"
    out = _run([sys.executable, "-c", probe], copy, 120)
    paths = out.stdout.split()
    if out.returncode or len(paths) != 2 or not all(Path(p).resolve().is_relative_to(copy.resolve()) for p in paths):
        raise RuntimeError(f"the mutated copy at {copy} is not what gets imported (got {paths or out.stderr[-500:]})")


def _outcome(report: Path, proc: subprocess.CompletedProcess, elapsed: float) -> RunOutcome:
    if not report.exists():
        return RunOutcome({}, {}, proc.returncode, elapsed, CRASH, (proc.stderr or proc.stdout)[-800:])
    checks = json.loads(report.read_text())["checks"]
    return RunOutcome({c["id"]: c["status"] for c in checks}, {c["id"]: c["kind"] for c in checks},
                      proc.returncode, elapsed)


def _verify_args(report: Path, args, seed: int) -> list[str]:
    return (["verify", "--profile", args.profile, "--seed", str(seed), "--json", str(report), "--no-progress"]
            + (["--only", *args.checks] if args.checks else []))


def run_verify(copy: Path, args, seed: int) -> RunOutcome:
    """``python -m verification verify --profile P --seed S --json ...`` on ``copy``; CRASH/TIMEOUT when no report."""
    report = copy / "verify-report.json"
    started = time.perf_counter()
    try:
        proc = _run([sys.executable, "-m", "verification", *_verify_args(report, args, seed)], copy, args.timeout)
    except subprocess.TimeoutExpired:
        return RunOutcome({}, {}, None, time.perf_counter() - started, TIMEOUT, f"no report after {args.timeout:.0f} s")
    return _outcome(report, proc, time.perf_counter() - started)


def run_pytest(copy: Path, mutant: Mutant, timeout_s: float) -> dict:
    paths = [p for p in (*mirror_tests(mutant), "tests/verification") if (copy / p).exists()]
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *paths]
    started = time.perf_counter()
    try:
        proc = _run(cmd, copy, timeout_s)
    except subprocess.TimeoutExpired:
        return {"killed": True, "outcome": TIMEOUT, "paths": paths, "elapsed_s": time.perf_counter() - started}
    tail = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    # which test failed: a kill by a test that also fails on the unmutated tree is no kill (check it with
    # `pytest NODE` on main before trusting a pytest-only kill)
    failed = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return {"killed": proc.returncode != 0, "outcome": f"exit {proc.returncode}: {' '.join(tail)}", "failed": failed,
            "paths": paths, "elapsed_s": time.perf_counter() - started}


def killing_checks(baseline: RunOutcome, mutated: RunOutcome) -> tuple[list[str], list[str]]:
    """(checks that kill the mutant, checks only weakened to ``inconclusive``)."""
    killed, weakened = [], []
    for cid, before in baseline.statuses.items():
        after = mutated.statuses.get(cid, "missing")
        if after == before:
            continue
        kind = baseline.kinds.get(cid, "theorem")
        if after in ACCUSING or after == "missing" or kind == "conjecture" or before not in ("holds", "survives"):
            killed.append(cid)
        else:
            weakened.append(cid)
    return killed, weakened


#: the baseline of one seed: the unmutated run and the lines it executed (None: --no-reach)
Baseline = tuple[RunOutcome, "dict[str, set[int]] | None"]


def _seed_outcome(mutant: Mutant, copy: Path, source: str, baseline: Baseline, args, seed: int) -> dict:
    """The mutated copy's verify run at ``seed`` judged against that seed's baseline."""
    outcome, reach = baseline
    reached = reach is None or bool(statement_lines(mutant, source) & reach.get(mutant.file, set()))
    if reached:
        mutated = run_verify(copy, args, seed)
    else:  # the unmutated run never executed these lines: the mutated run computes exactly the same
        mutated = dataclasses.replace(outcome, elapsed_s=0.0, detail="not executed by the baseline verify run")
    if mutated.failure:
        killed_by, weakened = [mutated.failure], []
    else:
        killed_by, weakened = killing_checks(outcome, mutated)
    return {"reached": reached, "killed_by": killed_by, "weakened": weakened, "statuses": mutated.statuses,
            "returncode": mutated.returncode, "detail": mutated.detail, "elapsed_s": round(mutated.elapsed_s, 1)}


def across_seeds(per_seed: dict[str, dict]) -> dict:
    """One mutant's verdict over several seeds: killed only if every seed kills it.

    ``killed_by``: every check that killed it at some seed when every seed killed it, else empty (the
    mutant survives); ``killed_by_every_seed``: the checks that killed it at every seed (a check's own
    score across seeds); ``killed_at_seeds``; ``weakened``: at any seed; ``reached``: at any seed.
    """
    kills = [set(outcome["killed_by"]) for outcome in per_seed.values()]
    every = all(kills)
    return {"reached": any(o["reached"] for o in per_seed.values()),
            "killed_by": sorted(set().union(*kills)) if every else [],
            "killed_by_every_seed": sorted(set.intersection(*kills)) if kills else [],
            "killed_at_seeds": [seed for seed, outcome in per_seed.items() if outcome["killed_by"]],
            "weakened": sorted(set().union(*(o["weakened"] for o in per_seed.values()))),
            "elapsed_s": round(sum(o["elapsed_s"] for o in per_seed.values()), 1)}


def evaluate(mutant: Mutant, baselines: dict[int, Baseline], parent: Path, snapshot: Path, args) -> dict:
    """One mutant at every seed of ``baselines``; with one seed, the row keeps the single-seed fields only."""
    copy = make_copy(parent, with_tests=bool(args.pytest), source_root=snapshot)
    try:
        source = (copy / "iclkd_jax" / mutant.file).read_text()
        mutant.apply_to_tree(copy)
        per_seed = {str(seed): _seed_outcome(mutant, copy, source, baseline, args, seed)
                    for seed, baseline in baselines.items()}
        row = {"id": mutant.id, "file": f"iclkd_jax/{mutant.file}", "kind": mutant.kind,
               "description": mutant.description, "snippet": mutant.snippet, "replacement": mutant.replacement,
               "equivalent": mutant.equivalent}
        if len(per_seed) == 1:
            row.update(next(iter(per_seed.values())))
        else:
            row.update(across_seeds(per_seed), per_seed=per_seed)
        if args.pytest == "all" or (args.pytest == "survivors" and not row["killed_by"]):
            row["pytest"] = run_pytest(copy, mutant, args.timeout * 4)
        return row
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def summarise(rows: list[dict], checks: list[str], seeds: list[int] | None = None) -> dict:
    """Kill rates over the scored (not equivalent) mutants; with several seeds a mutant is killed only if
    every seed kills it, a check kills it only if it does at every seed, and ``per_seed_kill_rate`` gives
    each seed's own rate."""
    scored = [r for r in rows if not r["equivalent"]]
    per_check = {}
    for cid in checks:
        kills = [r["id"] for r in scored if cid in r.get("killed_by_every_seed", r["killed_by"])]
        per_check[cid] = {"kills": len(kills), "rate": len(kills) / len(scored) if scored else None, "mutants": kills}
    killed = [r for r in scored if r["killed_by"]]
    summary = {"mutants": len(rows), "scored": len(scored), "equivalent": len(rows) - len(scored),
               "killed_by_verify": len(killed), "verify_kill_rate": len(killed) / len(scored) if scored else None,
               "per_check": per_check, "survivors": [r["id"] for r in scored if not r["killed_by"]]}
    if seeds and len(seeds) > 1:
        per_seed = {str(s): sum(1 for r in scored if _killed_at(r, s)) for s in seeds}
        summary["seeds"] = list(seeds)
        summary["per_seed_kills"] = per_seed
        summary["per_seed_kill_rate"] = {s: n / len(scored) if scored else None for s, n in per_seed.items()}
    with_pytest = [r for r in scored if "pytest" in r or r["killed_by"]]
    if any("pytest" in r for r in rows):
        together = [r for r in with_pytest if r["killed_by"] or r["pytest"]["killed"]]
        summary["killed_by_verify_or_pytest"] = len(together)
        summary["together_kill_rate"] = len(together) / len(scored) if scored else None
        summary["survive_both"] = [r["id"] for r in with_pytest if not (r["killed_by"] or r["pytest"]["killed"])]
        summary["pytest_not_run"] = [r["id"] for r in scored if r not in with_pytest]
    return summary


def _killed_at(row: dict, seed: int) -> bool:
    return bool(row["per_seed"][str(seed)]["killed_by"]) if "per_seed" in row else bool(row["killed_by"])


def report_seeds(report: dict) -> list[int]:
    """The seeds of a report (one written before --seeds has ``seed`` only; 0, the default, if neither)."""
    return list(report.get("seeds") or [report.get("seed", 0)])


def markdown(report: dict) -> str:
    s = report["summary"]
    seeds = report_seeds(report)
    several = len(seeds) > 1
    lines = [f"# Source-mutation score of `iclkd verify --profile {report['profile']}`", "",
             (f"{report['timestamp']} · commit {report['commit']} · seed{'s' if several else ''} "
              f"{', '.join(map(str, seeds))} · {s['mutants']} mutants ({s['equivalent']} declared equivalent)"), "",
             f"**verify alone kills {s['killed_by_verify']}/{s['scored']} = {100 * s['verify_kill_rate']:.1f} %**"
             + (" (a mutant counts as killed only if every seed kills it)" if several else "")]
    if "together_kill_rate" in s:
        lines.append(f"; verify or pytest: {s['killed_by_verify_or_pytest']}/{s['scored']} = "
                     f"{100 * s['together_kill_rate']:.1f} %")
    if "per_seed_kills" in s:
        lines += ["", "Per seed: " + "; ".join(f"seed {seed} {n}/{s['scored']} = {100 * s['per_seed_kill_rate'][seed]:.1f} %"
                                               for seed, n in s["per_seed_kills"].items())]
    lines += ["", "| check | kills" + (" (at every seed)" if several else "") + " | rate |", "| --- | --- | --- |"]
    for cid, c in s["per_check"].items():
        lines.append(f"| {cid} | {c['kills']} | {100 * c['rate']:.0f} % |")
    lines += ["", "## Surviving mutants (not killed by any check)", ""]
    survivors = [r for r in report["mutants"] if not r["killed_by"] and not r["equivalent"]]
    if not survivors:
        lines.append("None.")
    for r in survivors:
        extra = "; **never executed** by the verify run" if not r.get("reached", True) else ""
        extra += f"; measured on {r['carried_from']} (carried)" if "carried_from" in r else ""
        extra += f"; weakened {', '.join(r['weakened'])} to inconclusive" if r["weakened"] else ""
        extra += f"; killed at seed(s) {', '.join(r['killed_at_seeds'])} only" if r.get("killed_at_seeds") else ""
        pyt = f"; pytest: {'killed' if r['pytest']['killed'] else 'SURVIVES'} ({r['pytest']['outcome']})" \
            if "pytest" in r else ""
        lines += [f"- `{r['id']}` ({r['file']}, {r['kind']}): {r['description']}{extra}{pyt}",
                  f"  - `{' '.join(r['snippet'].split())}` -> `{' '.join(r['replacement'].split())}`"]
    equivalents = [r for r in report["mutants"] if r["equivalent"]]
    if equivalents:
        lines += ["", "## Declared equivalent (excluded from the rate)", ""]
        for r in equivalents:
            lines.append(f"- `{r['id']}` ({r['file']}): {r['equivalent']} (killed by: {', '.join(r['killed_by']) or 'none'})")
    lines += ["", "## Every mutant", "", "| mutant | kind | killed by | s | measured on |", "| --- | --- | --- | --- | --- |"]
    for r in report["mutants"]:
        lines.append(f"| {r['id']} | {r['kind']} | {', '.join(r['killed_by']) or '**survives**'} | {r['elapsed_s']} "
                     f"| {r.get('carried_from', report['commit'])} |")
    return "\n".join(lines) + "\n"


def source_commit() -> str:
    """The checkout's short commit (``+dirty`` with uncommitted library or suite changes); ``unknown`` outside git."""
    try:
        out = _run(["git", "rev-parse", "--short", "HEAD"], ROOT, 10, env=None)
        if out.returncode != 0 or not out.stdout.strip():
            return "unknown"
        dirty = _run(["git", "status", "--porcelain", "iclkd_jax", "verification"], ROOT, 10, env=None).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def select(args) -> tuple[list[Mutant], list[dict]]:
    """(the mutants to run, the rows carried over from --skip-killed-in's report)."""
    if args.mutants:
        unknown = [m for m in args.mutants if m not in BY_ID]
        if unknown:
            from verification.io.command import CommandError

            raise CommandError(f"unknown mutant(s) {', '.join(unknown)} (see --list)")
        chosen = [BY_ID[m] for m in args.mutants]
    else:
        chosen = [m for m in CATALOGUE if m.quick] if args.quick else list(CATALOGUE)
    carried = []
    if args.skip_killed_in:
        previous = json.loads(Path(args.skip_killed_in).read_text())
        if report_seeds(previous) != list(args.seeds):
            from verification.io.command import CommandError

            raise CommandError(f"--skip-killed-in: that report is for seed(s) {report_seeds(previous)}, this run for "
                               f"{list(args.seeds)}: a kill carries over only between runs of the same seeds")
        wanted = {m.id for m in chosen}
        carried = [dict(r, carried_from=previous["commit"]) for r in previous["mutants"]
                   if r["killed_by"] and r["id"] in wanted and BY_ID.get(r["id"]) is not None]
        done = {r["id"] for r in carried}
        chosen = [m for m in chosen if m.id not in done]
    return chosen, carried


def add_arguments(p) -> None:
    """The flags of ``iclkd bench mutation`` (``p``: a :class:`verification.io.command.Parser`)."""
    from verification.core.model import PROFILES
    from verification.io.command import (
        LazyChoices,
        check_ids,
        input_file,
        output_file,
        positive_float,
        positive_int,
        seed,
        seeds,
    )

    p.add_argument("--quick", action="store_true", help="run the representative subset (a quarter, every module)")
    p.add_argument("--mutants", nargs="+", metavar="ID", help="run only these mutants (ids from --list)")
    p.add_argument("--checks", nargs="+", metavar="CHECK", choices=LazyChoices(check_ids),
                   help="pass --only CHECK... to iclkd verify")
    p.add_argument("--profile", default="quick", choices=tuple(PROFILES), help="verify's profile (default quick)")
    p.add_argument("--seed", type=seed, default=0, help="verify's seed (default 0)")
    p.add_argument("--seeds", type=seeds, metavar="SEEDS",
                   help="run verify at each of these seeds (0,1,2 or 0..2): a mutant counts as killed only if every "
                        "seed kills it; the report gives each seed's kill rate too")
    p.add_argument("--pytest", nargs="?", const="all", choices=("all", "survivors"),
                   help="also run the mirrored tests + tests/verification (for every mutant, or verify's survivors)")
    p.add_argument("--jobs", type=positive_int, default=1, help="mutants run at once (default 1: a verify uses a core)")
    p.add_argument("--timeout", type=positive_float, default=QUICK_PROFILE_TIMEOUT_S, help="seconds per verify run")
    p.add_argument("--skip-killed-in", type=input_file, metavar="JSON",
                   help="re-run only the mutants a previous report did not kill (a cheap progress update)")
    p.add_argument("--no-reach", action="store_true",
                   help="run verify on every mutant, even on lines the unmutated run never executes")
    p.add_argument("--json", type=output_file, metavar="PATH", help="the JSON report (rewritten after each mutant)")
    p.add_argument("--markdown", type=output_file, metavar="PATH", help="the Markdown report")
    p.add_argument("--list", action="store_true", help="list the catalogue and exit")
    p.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                   help="run nothing: combine these reports (the first that has a mutant wins) into --json/--markdown")


def _progress(row: dict, done: int, total: int) -> None:
    pytest = f" (pytest: {'killed' if row['pytest']['killed'] else 'survives'})" if "pytest" in row else ""
    reached = "" if row["reached"] else " (not executed)"
    print(f"[{done}/{total}] {row['id']:42s} {', '.join(row['killed_by']) or 'SURVIVES'}{reached}{pytest}"
          f"  {row['elapsed_s']} s", file=sys.stderr, flush=True)


def _run_all(parent: Path, mutants: list[Mutant], args, commit: str) -> tuple[dict[int, Baseline], list[dict]]:
    # every copy comes from one snapshot taken now, so edits to the working tree during a long run change nothing
    snapshot = make_copy(parent, with_tests=bool(args.pytest))
    base_copy = make_copy(parent, with_tests=False, source_root=snapshot)
    check_imports_copy(base_copy)
    baselines: dict[int, Baseline] = {}
    for seed in args.seeds:
        if args.no_reach:
            baselines[seed] = run_verify(base_copy, args, seed), None
        else:
            baselines[seed] = trace_reach(base_copy, args, seed)
        baseline = baselines[seed][0]
        if baseline.failure:
            return baselines, []
        print(f"baseline seed {seed} ({baseline.elapsed_s:.0f} s{'' if args.no_reach else ', traced'}): "
              + ", ".join(f"{k} {v}" for k, v in baseline.statuses.items()), file=sys.stderr)
    rows: list[dict] = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs)
    try:
        futures = [pool.submit(evaluate, m, baselines, parent, snapshot, args) for m in mutants]
        for future in concurrent.futures.as_completed(futures):
            rows.append(future.result())
            _progress(rows[-1], len(rows), len(mutants))
            if args.json:  # partial report after every mutant: a long run that is stopped keeps its results
                _write(args.json, json.dumps(_report(args, commit, baselines, rows, None), indent=2))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        _kill_children()
        raise
    pool.shutdown()
    return baselines, rows


def _report(args, commit: str, baselines: dict[int, Baseline], rows: list[dict], elapsed: float | None) -> dict:
    order = {m.id: (m.file, i) for i, m in enumerate(CATALOGUE)}  # grouped by module, catalogue order within
    rows = sorted(rows, key=lambda r: order.get(r["id"], ("~", 0)))
    seeds = list(baselines)
    first = baselines[seeds[0]][0]
    return {"profile": args.profile, "seed": seeds[0] if len(seeds) == 1 else None, "seeds": seeds,
            "checks": args.checks, "commit": commit,
            "timestamp": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "complete": elapsed is not None, "baseline": first.statuses,
            "baselines": {str(seed): b.statuses for seed, (b, _) in baselines.items()},
            "baseline_elapsed_s": round(sum(b.elapsed_s for b, _ in baselines.values()), 1),
            "elapsed_s": None if elapsed is None else round(elapsed, 1), "mutants": rows,
            "summary": summarise(rows, list(first.statuses), seeds)}


def merge(reports: list[dict]) -> dict:
    """One report from several (the first that has a mutant wins; older rows keep ``carried_from``).

    For runs split over time (survivors first on the newest main, the rest re-confirmed or carried): the
    result says, per mutant, which commit it was measured on.
    """
    first = reports[0]
    if any(report_seeds(r) != report_seeds(first) for r in reports):
        from verification.io.command import CommandError

        raise CommandError("--merge: the reports are for different seeds "
                           f"({', '.join(str(report_seeds(r)) for r in reports)}); merge runs of the same seeds only")
    rows: dict[str, dict] = {}
    for report in reports:
        for row in report["mutants"]:
            if row["id"] in BY_ID and row["id"] not in rows:
                row = dict(row, equivalent=BY_ID[row["id"]].equivalent)  # the catalogue's current judgement
                rows[row["id"]] = row if report is first else dict(row, carried_from=row.get("carried_from",
                                                                                          report["commit"]))
    order = {m.id: (m.file, i) for i, m in enumerate(CATALOGUE)}
    merged = sorted(rows.values(), key=lambda r: order[r["id"]])
    return dict(first, mutants=merged, complete=all(r.get("complete") for r in reports),
                merged_from=[r["commit"] for r in reports],
                summary=summarise(merged, list(first["baseline"]), report_seeds(first)))


def _write(path: Path, text: str) -> None:
    from verification.core.outputs import write_atomic

    write_atomic(path, text)


def main(argv: list[str] | None = None) -> int:
    from verification.io.command import standalone

    return standalone("iclkd bench mutation", sys.modules[__name__], argv)


def run(args: argparse.Namespace) -> int:
    """``iclkd bench mutation``: each catalogue mutant on a temporary copy, ``iclkd verify`` on it, the kill rates."""
    from verification.io.command import CommandError, ExitStatus

    if args.list:
        for m in CATALOGUE:
            flags = ("quick " if m.quick else "") + ("equivalent" if m.equivalent else "")
            print(f"{m.id:42s} {m.kind:18s} {flags:17s} {m.description}")
        return ExitStatus.OK
    if args.merge:
        report = merge([json.loads(Path(p).read_text()) for p in args.merge])
        return _emit(report, args)
    if args.seeds and args.seed != 0:
        raise CommandError("give --seed or --seeds, not both")
    args.seeds = args.seeds or [args.seed]
    mutants, carried = select(args)
    for m in mutants:  # fail before any run when the catalogue no longer matches the source
        try:
            m.apply((ROOT / "iclkd_jax" / m.file).read_text())
        except ValueError as err:
            raise CommandError(str(err), ExitStatus.ERROR) from None
    started, commit = time.perf_counter(), source_commit()
    previous_handler = signal.signal(signal.SIGTERM, _kill_children)
    try:
        with tempfile.TemporaryDirectory(prefix="iclkd-mutation-") as tmp:
            baselines, rows = _run_all(Path(tmp), mutants, args, commit)
    except KeyboardInterrupt:
        _kill_children()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    for seed, (baseline, _) in baselines.items():
        if baseline.failure:
            raise CommandError(f"the unmutated baseline at seed {seed} failed ({baseline.failure}): {baseline.detail}",
                               ExitStatus.ERROR)
    return _emit(_report(args, commit, baselines, rows + carried, time.perf_counter() - started), args)


def _emit(report: dict, args) -> int:
    text = markdown(report)
    print(text)
    if args.json:
        _write(args.json, json.dumps(report, indent=2))
    if args.markdown:
        _write(args.markdown, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
