import math

import pytest
from _planted import planted

from iclkd_jax import features
from verification.engine.runner import run_check


def test_holds_on_the_real_implementation():
    result = run_check("thm-3.1b", profile="smoke", seed=0)
    assert result.status == "holds", result.summary
    assert result.cases >= 1500
    f = result.figures
    assert f["max_kernel_error_float64"] < 1e-12
    assert f["max_kernel_error_float32"] < 1e-4
    assert f["max_grad_error_over_tolerance"] < 1.0 and f["max_to_matrix_error_over_tolerance"] < 1.0
    assert 0.0 < f["max_step_error_over_taylor_bound"] <= 1.0
    assert result.tightness is None or result.tightness >= 1.0
    assert {"w0_out", "dw_out", "log_eta", "tolerance", "query"} <= set(result.worst_case)


def _loss_over_n_minus_1(original):
    def kd_loss(w, weights, tokens, **kw):
        n = tokens.shape[0]
        return original(w, weights, tokens, **kw) * n / max(n - 1, 1)
    return kd_loss


def _double_eta(original):
    def distilled(weights, tokens, *, log_eta=None, eta=None, **kw):
        return original(weights, tokens, log_eta=log_eta + math.log(2.0), **kw)
    return distilled


def _log_eta_off(original):
    def decomposition(*args):
        dec = original(*args)
        return dec._replace(log_eta=dec.log_eta + math.log(2.0))
    return decomposition


@pytest.mark.parametrize("name, make", [
    ("kd_loss", _loss_over_n_minus_1),
    pytest.param("distilled_weights", _double_eta, marks=pytest.mark.slow),
    pytest.param("kd_decomposition", _log_eta_off, marks=pytest.mark.slow)])
def test_planted_library_bugs_are_violations(monkeypatch, name, make):
    with planted(monkeypatch, name, make):
        result = run_check("thm-3.1b", profile="smoke", seed=0, shrink=False)
    assert result.status == "violated", (name, result.summary)


@pytest.mark.slow
def test_wrong_sign_in_a_taylor_coefficient_is_a_violation(monkeypatch):
    original = features._taylor

    def taylor(u, order):
        phi = original(u, order)
        start = 1 + u.shape[1]                       # the second-order block u^{⊗2}/sqrt(2) flipped
        return phi.at[:, start:start + u.shape[1] ** 2].multiply(-1.0)

    with planted(monkeypatch, "taylor_features", lambda f: f):
        monkeypatch.setattr(features, "_taylor", taylor)
        result = run_check("thm-3.1b", profile="smoke", seed=0, shrink=False)
    assert result.status == "violated", result.summary
