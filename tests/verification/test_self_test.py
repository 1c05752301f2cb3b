"""Every registered mutant of every check is caught (the suite's proof that its checks can fail)."""

import pytest

from verification.engine.plugins import all_checks
from verification.engine.runner import accuses_library, mutant_caught, run_check

MUTANTS = [(cid, name) for cid, cls in all_checks().items() for name in cls.mutants]


def test_every_theorem_and_lemma_has_at_least_three_mutants():
    for cid, cls in all_checks().items():
        if cls.kind in ("theorem", "lemma"):
            assert len(cls.mutants) >= 3, f"{cid} has only {len(cls.mutants)} mutants"


@pytest.mark.parametrize("check_id,mutant", MUTANTS, ids=[f"{c}:{m}" for c, m in MUTANTS])
def test_mutant_is_caught(check_id, mutant):
    kind = all_checks()[check_id].kind
    mutated = run_check(check_id, profile="smoke", seed=0, mutant=mutant, shrink=False)
    baseline = "holds" if kind != "conjecture" else run_check(check_id, profile="smoke", seed=0).status
    assert mutant_caught(kind, baseline, mutated.status, library_non_finite=accuses_library(mutated)), (
        check_id, mutant, mutated.status, mutated.summary)
