"""Runs registered checks (and their mutants) and collects :class:`CheckResult`s."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

from tqdm import tqdm

from verification.core import protocol
from verification.core.guard import guarded
from verification.core.model import PROFILES, CheckResult, ProfileName, RunContext
from verification.engine import journal as journal_units
from verification.engine.journal import Journal
from verification.engine.plugins import all_checks


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    return tqdm(items, desc=desc, unit="check", leave=False)


def run_check(check_id: str, *, profile: ProfileName = "quick", seed: int = 0, mutant: str | None = None,
              shrink: bool = True) -> CheckResult:
    """Runs one check; an exception inside a check is reported as status ``error`` with its summary."""
    checks = all_checks()
    if check_id not in checks:
        raise ValueError(f"unknown check id {check_id!r}; known: {', '.join(checks)}")
    cls = checks[check_id]
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    if mutant is not None and mutant not in cls.mutants:
        raise ValueError(f"check {check_id} has no mutant {mutant!r}; it has {sorted(cls.mutants)}")
    ctx = RunContext(PROFILES[profile], seed, check_id, mutant, shrink)
    return guarded(lambda: cls().run(ctx), check_id=check_id, kind=cls.kind, seed=seed, mutant=mutant)


def default_ids(checks: dict | None = None) -> list[str]:
    """The checks a run selects when none are named: every registered check except those on a real model
    (their ``real_model`` hook: they run when named, or under ``--real-model``)."""
    checks = all_checks() if checks is None else checks
    return [cid for cid, cls in checks.items() if not protocol.offers(cls, "real_model")]


def iter_checks(ids: Iterable[str] | None = None, *, profile: ProfileName = "quick", seed: int = 0,
                progress: bool = False, journal: Journal | None = None) -> Iterator[CheckResult]:
    """Runs the selected checks (:func:`default_ids` by default; repeated ids once), yielding each result as it
    finishes.

    With several processes check j runs on process j mod N and every process gets every result. With a
    ``journal`` (:mod:`verification.engine.journal`) each finished check is journaled, and a resumed run
    reuses the journaled ones; the results come in check order either way.
    """
    checks = all_checks()
    ids = default_ids(checks) if not ids else list(dict.fromkeys(ids))
    unknown = [i for i in ids if i not in checks]
    if unknown:
        raise ValueError(f"unknown check id(s) {unknown}; known: {', '.join(checks)}")
    yield from journal_units.map_units(
        ids, lambda i: run_check(i, profile=profile, seed=seed), journal=journal,
        unit_of=lambda i: journal_units.Unit(f"check/{i}", i, journal_units.check_sources(checks[i])),
        decode=journal_units.decode_as(CheckResult), wrap=lambda items: _progress(items, progress, "iclkd verify"))


def run_checks(ids: Iterable[str] | None = None, *, profile: ProfileName = "quick", seed: int = 0,
               progress: bool = False) -> list[CheckResult]:
    """The results of :func:`iter_checks` as a list."""
    return list(iter_checks(ids, profile=profile, seed=seed, progress=progress))


@dataclasses.dataclass
class MutantOutcome:
    check_id: str
    mutant: str
    description: str
    baseline_status: str
    mutant_status: str
    caught: bool
    worst: float | None


def accuses_library(result: CheckResult) -> bool:
    """Status ``error`` because a value the library computed is NaN or infinite (not a crash, not the suite's own
    overflow): the report names the library's quantity and the case."""
    return result.status == "error" and bool(result.figures.get("non_finite", {}).get("library"))


def mutant_caught(kind: str, baseline_status: str, mutant_status: str, *, library_non_finite: bool = False) -> bool:
    """A mutant is caught by a verdict, never by a crash: ``error`` (the check raised) catches nothing, except an
    ``error`` that names a NaN or an infinity the library computed (``library_non_finite``, see
    :func:`accuses_library`): a theorem or lemma check then tells the user the library failed (exit 3), which is
    what a planted overflow must produce (``violated`` would claim a finite inequality failed)."""
    if kind in ("theorem", "lemma"):
        return mutant_status in ("violated", "refuted") or (mutant_status == "error" and library_non_finite)
    return mutant_status != baseline_status and mutant_status not in ("inconclusive", "error")


def self_test(ids: Iterable[str] | None = None, *, profile: ProfileName = "quick", seed: int = 0,
              progress: bool = False) -> list[MutantOutcome]:
    """Runs every registered mutant of the selected checks (:func:`default_ids` by default); see
    :func:`mutant_caught`."""
    return list(iter_self_test(ids, profile=profile, seed=seed, progress=progress))


def iter_self_test(ids: Iterable[str] | None = None, *, profile: ProfileName = "quick", seed: int = 0,
                   progress: bool = False, journal: Journal | None = None) -> Iterator[MutantOutcome]:
    """:func:`self_test`, yielding each mutant's outcome as it finishes (journaled as in :func:`iter_checks`)."""
    checks = all_checks()
    ids = default_ids(checks) if not ids else list(dict.fromkeys(ids))
    jobs = [(cid, name) for cid in ids for name in checks[cid].mutants]
    baselines: dict[str, CheckResult] = {}

    def outcome(job: tuple[str, str]) -> MutantOutcome:
        cid, name = job
        if cid not in baselines:  # per process: each computes the baselines of its own jobs
            baselines[cid] = run_check(cid, profile=profile, seed=seed)
        result = run_check(cid, profile=profile, seed=seed, mutant=name, shrink=False)
        kind = checks[cid].kind
        return MutantOutcome(cid, name, checks[cid].mutants[name], baselines[cid].status, result.status,
                             mutant_caught(kind, baselines[cid].status, result.status,
                                           library_non_finite=accuses_library(result)), result.worst)

    # mutant j on process j mod N
    yield from journal_units.map_units(
        jobs, outcome, journal=journal,
        unit_of=lambda job: journal_units.Unit(f"mutant/{job[0]}/{job[1]}", f"{job[0]} {job[1]}",
                                               journal_units.check_sources(checks[job[0]])),
        decode=journal_units.decode_as(MutantOutcome), wrap=lambda items: _progress(items, progress, "self-test"))
