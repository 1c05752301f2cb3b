from verification.engine.runner import run_check


def test_rate_is_n_to_the_minus_half_not_one_over_n():
    result = run_check("conj-3.2", profile="quick", seed=0)
    assert result.status == "refuted", result.summary
    lo, hi = result.figures["slope_ci"]
    assert lo <= result.figures["slope"] <= hi
    assert -0.75 < lo and hi < -0.2  # far from -1, around -1/2
    assert -0.7 < result.figures["gap_slope"] < -0.3
    needed = result.figures["constant_needed_for_log(1/δ)/N"]
    assert needed[-1] > 2 * needed[0]  # an O(1/N) term's constant must grow with N
    assert "constants matter" in result.summary
