"""Runs registered checks (and their mutants) and collects :class:`CheckResult`s."""

from __future__ import annotations

import dataclasses
import time
import traceback
from typing import Iterable

from verification.registry import PROFILES, CheckResult, RunContext, all_checks


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="check", leave=False)


def run_check(check_id: str, *, profile: str = "quick", seed: int = 0, mutant: str | None = None,
              shrink: bool = True) -> CheckResult:
    """Runs one check; an exception inside a check is reported as ``inconclusive`` with the error."""
    checks = all_checks()
    if check_id not in checks:
        raise ValueError(f"unknown check id {check_id!r}; known: {', '.join(checks)}")
    cls = checks[check_id]
    if mutant is not None and mutant not in cls.mutants:
        raise ValueError(f"check {check_id} has no mutant {mutant!r}; it has {sorted(cls.mutants)}")
    ctx = RunContext(PROFILES[profile], seed, check_id, mutant, shrink)
    start = time.perf_counter()
    try:
        result = cls().run(ctx)
    except Exception as err:  # a crashing check must show up in the report, not abort the suite
        result = CheckResult(id=check_id, kind=cls.kind, status="inconclusive", cases=0, worst=None,
                             worst_label="error", summary=f"check raised {type(err).__name__}: {err}",
                             figures={"traceback": traceback.format_exc(limit=5)}, seed=seed, mutant=mutant)
    result.elapsed_s = time.perf_counter() - start
    return result


def run_checks(ids: Iterable[str] | None = None, *, profile: str = "quick", seed: int = 0,
               progress: bool = False) -> list[CheckResult]:
    checks = all_checks()
    ids = list(checks) if not ids else list(ids)
    unknown = [i for i in ids if i not in checks]
    if unknown:
        raise ValueError(f"unknown check id(s) {unknown}; known: {', '.join(checks)}")
    return [run_check(i, profile=profile, seed=seed) for i in _progress(ids, progress, "iclkd verify")]


@dataclasses.dataclass
class MutantOutcome:
    check_id: str
    mutant: str
    description: str
    baseline_status: str
    mutant_status: str
    caught: bool
    worst: float | None


def mutant_caught(kind: str, baseline_status: str, mutant_status: str) -> bool:
    if kind in ("theorem", "lemma"):
        return mutant_status in ("violated", "refuted")
    return mutant_status != baseline_status and mutant_status != "inconclusive"


def self_test(ids: Iterable[str] | None = None, *, profile: str = "quick", seed: int = 0,
              progress: bool = False) -> list[MutantOutcome]:
    """Runs every registered mutant of the selected checks; see :func:`mutant_caught`."""
    checks = all_checks()
    ids = list(checks) if not ids else list(ids)
    jobs = [(cid, name) for cid in ids for name in checks[cid].mutants]
    baselines: dict[str, CheckResult] = {}
    outcomes = []
    for cid, name in _progress(jobs, progress, "self-test"):
        if cid not in baselines:
            baselines[cid] = run_check(cid, profile=profile, seed=seed)
        result = run_check(cid, profile=profile, seed=seed, mutant=name, shrink=False)
        kind = checks[cid].kind
        outcomes.append(MutantOutcome(cid, name, checks[cid].mutants[name], baselines[cid].status, result.status,
                                      mutant_caught(kind, baselines[cid].status, result.status), result.worst))
    return outcomes
