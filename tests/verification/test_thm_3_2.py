import dataclasses

import jax
import numpy as np
import pytest

from iclkd_jax import distributions as dists
from verification.checks import thm_3_2
from verification.runner import run_check


def test_holds_with_the_quick_profile():
    result = run_check("thm-3.2", profile="quick", seed=0)
    assert result.status == "holds", result.summary
    assert result.cases == 3 * 200
    assert 0 < result.worst < 1
    assert 1 < result.tightness < 10  # the two-point law keeps the bound within a small factor
    for s in result.figures["settings"]:
        assert s["violations"] == 0
        assert s["solver_slack"] <= 0 and s["solver_norm_excess"] <= 1e-10
        assert s["population_error_over_bound"] < 0.01
        assert s["C"] <= s["C_exact_map"]
        for rad in s["rademacher"].values():
            assert rad["ok"] and rad["monte_carlo"] <= rad["closed_form"] <= rad["BC/sqrt(N)"] * (1 + 1e-12)


def test_exact_supremum_matches_a_dense_solver():
    """The Kronecker/eigenbasis sup of one draw equals the dense trust-region solution of the full problem."""
    import iclkd_jax as ik

    setting = thm_3_2.SETTINGS[1]
    key = jax.random.key(3)
    wk, wv = thm_3_2.random_weights(key, setting)
    pop = thm_3_2.population(setting, key, wk, wv, 4 * thm_3_2.N_MAX)
    tokens = thm_3_2.sample_tokens(setting.distribution, jax.random.fold_in(key, 1), 4 * thm_3_2.N_MAX)
    tokens = tokens.reshape(4, thm_3_2.N_MAX, thm_3_2.TOKEN_DIM)
    res = thm_3_2.sup_gaps(tokens, key, thm_3_2.demo_weights(setting.n), wk, wv, pop, setting.ball)
    phi, t = thm_3_2._features_targets(tokens[0, :setting.n], np.asarray(wk), np.asarray(wv))
    phi, t = np.asarray(phi), np.asarray(t)
    d_sigma = np.asarray(pop["sigma"]) - phi.T @ phi / setting.n
    d_m = np.asarray(pop["m"]) - t.T @ phi / setting.n
    d_c = float(pop["c"]) - np.mean(np.sum(t * t, axis=1))
    a = np.kron(np.eye(thm_3_2.VALUE_DIM), d_sigma)
    dense = ik.max_quadratic_on_ball(0.5 * (a + a.T), d_m.reshape(-1), setting.ball)
    np.testing.assert_allclose(res["gap"][0], d_c + float(dense.value), rtol=1e-10, atol=1e-12)


def test_unbounded_distribution_is_refused(monkeypatch):
    gaussian = dataclasses.replace(thm_3_2.SETTINGS[0], name="gaussian", distribution=dists.gaussian(1))
    monkeypatch.setattr(thm_3_2, "SETTINGS", (gaussian,))
    result = run_check("thm-3.2", profile="smoke", seed=0)
    assert result.status == "inconclusive"
    assert "UnboundedSupportError" in result.summary and "unbounded" in result.summary
    with pytest.raises(dists.UnboundedSupportError):
        thm_3_2.constants(gaussian, np.eye(2, 3), np.eye(2, 3))
