from verification.runner import run_check


def test_holds_on_the_real_implementation():
    result = run_check("thm-3.1b", profile="quick", seed=0)
    assert result.status == "holds", result.summary
    assert result.cases >= 10
    f = result.figures
    assert f["max_kernel_error_float64"] < 1e-12
    assert f["max_kernel_error_float32"] < 1e-4
    assert f["max_grad_error_over_tolerance"] < 1.0
    assert 0.0 < f["max_step_error_over_taylor_bound"] <= 1.0
    assert result.tightness is None or result.tightness >= 1.0
