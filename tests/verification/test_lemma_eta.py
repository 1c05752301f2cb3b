import math

from verification.runner import run_check


def test_holds_on_the_real_implementation():
    result = run_check("lemma-eta", profile="quick", seed=0)
    assert result.status == "holds", result.summary
    assert result.cases >= 20
    f = result.figures
    assert f["max_abs_logit"] >= 1e3                       # past float64's exp overflow (709)
    assert f["max_abs_error_log_eta"] < 1e-3               # float32 at |logit| ~ 1e3: eps * 1e3 ~ 1e-4
    lo, hi = f["log10_eta_range"]
    assert lo < -300 and hi > 300 and math.isfinite(lo) and math.isfinite(hi)  # eta itself would under/overflow
    sweep = f["sharp_gap_sweep"]["entropy"]
    assert abs(sweep[0] - math.log(21)) < 1e-12 and abs(sweep[-1]) < 1e-300
