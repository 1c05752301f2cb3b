import math

import numpy as np
from _planted import planted

from verification.engine.runner import run_check


def test_holds_on_the_real_implementation():
    result = run_check("lemma-eta", profile="smoke", seed=0)
    assert result.status == "holds", result.summary
    assert result.cases >= 1000
    f = result.figures
    assert f["max_abs_logit"] >= 1e3                       # past float64's exp overflow (709)
    assert f["max_abs_error_log_eta_float64"] < 1e-10
    assert f["max_abs_error_log_eta"] < 1e-3               # float32 at |logit| ~ 1e3: eps * 1e3 ~ 1e-4
    lo, hi = f["log10_eta_range"]
    assert lo < -300 and hi > 300 and math.isfinite(lo) and math.isfinite(hi)  # eta itself would under/overflow
    sweep = f["sharp_gap_sweep"]
    assert abs(sweep["entropy"][0] - math.log(sweep["N+M"])) < 1e-12 and abs(sweep["entropy"][-1]) < 1e-300
    wc = result.worst_case
    assert {"logits", "n_demos", "n_context", "log_partition", "log_eta", "entropy", "eps"} <= set(wc)


def _logsumexp_off_by_log2(original):
    def decomposition(*args):
        dec = original(*args)
        return dec._replace(log_partition=dec.log_partition + np.log(2.0))
    return decomposition


def test_logsumexp_off_by_log2_is_a_violation(monkeypatch):
    with planted(monkeypatch, "kd_decomposition", _logsumexp_off_by_log2):
        result = run_check("lemma-eta", profile="smoke", seed=0, shrink=False)
    assert result.status == "violated", result.summary
