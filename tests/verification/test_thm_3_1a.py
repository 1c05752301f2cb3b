import pytest

from verification.registry import all_checks
from verification.runner import run_check

CHECK = "thm-3.1a"


def test_holds_on_the_real_implementation():
    result = run_check(CHECK, profile="quick", seed=0)
    assert result.status == "holds", result.summary
    assert result.cases >= 10
    assert result.figures["max_error_float64"] < 1e-12


@pytest.mark.parametrize("mutant", sorted(all_checks()[CHECK].mutants))
def test_every_mutant_is_caught(mutant):
    result = run_check(CHECK, profile="smoke", seed=0, mutant=mutant, shrink=False)
    assert result.status == "violated", (mutant, result.summary)
    assert result.counterexample is not None
