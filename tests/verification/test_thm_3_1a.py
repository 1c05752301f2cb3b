from verification.runner import run_check


def test_holds_on_the_real_implementation():
    result = run_check("thm-3.1a", profile="quick", seed=0)
    assert result.status == "holds", result.summary
    assert result.cases >= 10
    assert result.figures["max_error_float64"] < 1e-12
    assert result.figures["max_error_float32"] < 1e-4
