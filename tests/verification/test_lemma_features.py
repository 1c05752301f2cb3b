from verification.runner import run_check


def test_holds_on_the_real_implementation():
    result = run_check("lemma-features", profile="quick", seed=0)
    assert result.status == "holds", result.summary
    f = result.figures
    for name, (slope, se) in f["slopes_[value,se]"].items():
        assert -0.6 <= slope <= -0.4, (name, slope, se)
    assert max(f["mean_rel_error_max"].values()) < 0.5
    assert f["taylor_max_error_over_remainder"] <= 1.0 and f["taylor_cases"] >= 10
    needed = f["m_needed_for_10pct"]
    # the exp(|u+z|^2) growth of the features needed is reported, and it grows
    predicted = [needed[k]["predicted"] for k in sorted(needed)]
    assert predicted == sorted(predicted) and predicted[-1] > 100 * predicted[0]
