from _planted import planted

from verification.engine.runner import run_check


def test_holds_on_the_real_implementation():
    result = run_check("thm-linear", profile="smoke", seed=0)
    assert result.status == "holds", result.summary
    assert result.cases >= 1000
    f = result.figures
    assert f["max_dual_error_float64"] < 1e-13 and f["max_gd_error_float64"] < 1e-13
    assert f["max_w0_error_float64"] < 1e-13
    assert f["max_dual_error_float32"] < 1e-5 and f["max_gd_error_float32"] < 1e-5
    assert {"wq", "queries", "attention_out", "dual_out", "xs", "ys", "xq", "w_init", "learning_rate", "prediction",
            "gd", "eps"} <= set(result.worst_case)


def _gd_over_n_minus_1(original):
    def gd(xs, ys, x_query, *, learning_rate, w_init=None):
        n = xs.shape[0]
        return original(xs, ys, x_query, learning_rate=learning_rate * n / (n - 1), w_init=w_init)
    return gd


def test_one_over_n_minus_1_in_the_gd_step_is_a_violation(monkeypatch):
    with planted(monkeypatch, "gd_step_prediction", _gd_over_n_minus_1):
        result = run_check("thm-linear", profile="smoke", seed=0, shrink=False)
    assert result.status == "violated", result.summary
