from verification.runner import run_check


def test_refuted_by_the_linear_kernel_while_the_control_survives():
    result = run_check("conj-4.1", profile="quick", seed=0)
    assert result.status == "refuted", result.summary
    per_kernel = result.figures["per_kernel"]
    assert per_kernel["linear"]["refuted"]
    assert not per_kernel["product (control)"]["refuted"]
    assert per_kernel["product (control)"]["sup_c_hat"] <= 1.0 + 1e-9  # Theorem 4.1
    counterexample = result.counterexample
    assert counterexample["kernel"] == "linear"
    assert counterexample["mmd_zero"] and counterexample["dw_certified"]
    assert abs(counterexample["mmd2"]) < 1e-12 and counterexample["mean_difference"] < 1e-12
    assert counterexample["case"]["family"] == "scale"  # equal means, different covariance
    # a Gaussian kernel's MMD vanishes as its bandwidth grows: the constant grows with it
    by_bandwidth = result.figures["sup_c_hat_by_rbf_bandwidth"]
    assert by_bandwidth[100.0] > by_bandwidth[10.0] > by_bandwidth[1.0]
