from verification.runner import run_check


def test_holds_and_is_attained_with_an_isometric_value_map():
    result = run_check("thm-4.1", profile="quick", seed=0)
    assert result.status == "holds", result.summary
    assert result.cases >= 20
    assert result.worst <= 1 + 1e-9
    assert abs(result.tightness - 1.0) < 1e-8
    figures = result.figures
    assert figures["max_abs_tight_ratio_minus_1"] < 1e-8
    assert figures["max_ratio_random_wv"] < 1.0
    assert figures["max_mmd_tilde"] <= 2.0
    assert figures["max_logit"] > 100  # logits of a few hundred are exercised
    for family in figures["shift_families"].values():  # linear growth; the bound's slope is larger
        assert family["slope_dw"] <= family["slope_bound"]
        assert family["nonlinearity_dw"] < 0.1 and family["nonlinearity_mmd"] < 0.1
