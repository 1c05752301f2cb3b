from verification.runner import run_check


def test_holds_on_the_real_implementation():
    result = run_check("thm-linear", profile="quick", seed=0)
    assert result.status == "holds", result.summary
    assert result.cases >= 10
    f = result.figures
    assert f["max_dual_error_float64"] < 1e-13 and f["max_gd_error_float64"] < 1e-13
    assert f["max_w0_error_float64"] < 1e-13
    assert f["max_dual_error_float32"] < 1e-5 and f["max_gd_error_float32"] < 1e-5
