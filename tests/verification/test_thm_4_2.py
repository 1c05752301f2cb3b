from verification.runner import run_check


def test_holds_with_the_prediction_bound_attained():
    result = run_check("thm-4.2", profile="quick", seed=0)
    assert result.status == "holds", result.summary
    assert result.cases >= 20
    assert result.worst <= 1 + 1e-9
    assert abs(result.tightness - 1.0) < 1e-8
    figures = result.figures
    assert figures["max_abs_tight_prediction_minus_1"] < 1e-8
    assert figures["max_abs_tight_chain_minus_1"] < 1e-8
    assert 0.85 < figures["max_tight_risk_ratio"] <= 1.0  # (2 + rho)/(2 + 2 rho), rho <= 0.3
    assert figures["max_ratio_risk_random"] < 1.0
