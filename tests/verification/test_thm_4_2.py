"""thm-4.2: holds on the library (smoke), the attained configuration two-sided, planted library bugs caught."""

import math

import jax
import numpy as np
import pytest

import iclkd_jax as ik
from verification.engine.runner import run_check
from verification.statements.thm_4_2 import check as thm_4_2


def test_holds_with_the_prediction_bound_attained():
    result = run_check("thm-4.2", profile="smoke", seed=0)
    assert result.status == "holds", result.summary
    figures = result.figures
    assert result.worst <= 1 + 1e-9
    assert abs(result.tightness - 1.0) < 1e-8
    assert figures["max_abs_tight_prediction_minus_1"] < 1e-8 and figures["max_abs_tight_chain_minus_1"] < 1e-8
    assert figures["max_abs_tight_risk_ratio_minus_expected"] < 1e-8  # (2 + rho)/(2 + 2 rho) exactly
    assert 0.85 < figures["max_tight_risk_ratio"] <= 1.0
    assert figures["max_ratio_risk_random"] < 1.0
    assert max(figures["max_agreement_in_round_off_units"].values()) <= 1.0
    assert {"queries", "reference", "wk", "wv", "target", "prompt", "log_eta"} == set(result.worst_case)


@pytest.fixture(scope="module")
def tight_cases():
    return thm_4_2.draw_tight_cases(jax.random.key(2), 128)


@pytest.fixture
def fresh_compilation():
    """The tests clear the caches after planting a bug; clear them again after it is removed."""
    yield
    jax.clear_caches()


def test_eta_doubled_in_distilled_weights_is_a_violation(tight_cases, monkeypatch, fresh_compilation):
    assert float(np.max(thm_4_2.judge(tight_cases, None, chunk=128).score)) <= 1.0
    original = ik.distilled_weights

    def doubled(weights, tokens, *, log_eta=None, **kwargs):
        return original(weights, tokens, log_eta=log_eta + math.log(2.0), **kwargs)

    monkeypatch.setattr(ik, "distilled_weights", doubled)
    jax.clear_caches()
    judged = thm_4_2.judge(tight_cases, None, chunk=128)
    assert float(np.max(judged.agreement_score)) > 1.0 and float(np.max(judged.bound_score)) > 1.0


def test_kd_risk_off_by_its_mean_is_a_violation(tight_cases, monkeypatch, fresh_compilation):
    original = ik.kd_risk
    monkeypatch.setattr(ik, "kd_risk", lambda *a, **k: 2.0 * original(*a, **k))  # a sum instead of a mean over 2 rows
    jax.clear_caches()
    judged = thm_4_2.judge(tight_cases, None, chunk=128)
    assert float(np.max(judged.score)) > 1.0
