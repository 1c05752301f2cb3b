import dataclasses

import jax
import numpy as np
import pytest

import iclkd_jax as ik
from iclkd_jax import distributions as dists
from verification.cases import sup_gap
from verification.engine.runner import run_check
from verification.statements.thm_3_2 import check as thm_3_2


def test_holds_with_the_quick_profile():
    result = run_check("thm-3.2", profile="quick", seed=0)
    assert result.status == "holds", result.summary
    assert result.cases == 3 * 200
    assert 0 < result.worst < 1
    assert 1 < result.tightness < 10  # the two-point law keeps the bound within a small factor
    assert result.figures["reference_ok"] and result.figures["max_sup_gap_vs_reference"] <= 1.0
    for s in result.figures["settings"]:
        assert s["violations"] == 0 and s["rademacher_exact"]["ok"]
        assert s["solver_slack"] <= 0 and s["solver_norm_excess"] <= 1e-10
        assert s["population_error_over_bound"] < 0.01
        assert s["C"] <= s["C_exact_map"]
        for rad in s["rademacher"].values():
            assert rad["ok"] and rad["monte_carlo"] <= rad["closed_form"] <= rad["BC/sqrt(N)"] * (1 + 1e-12)


def test_unbounded_distribution_is_refused(monkeypatch):
    gaussian = dataclasses.replace(thm_3_2.SETTINGS[0], name="gaussian", distribution=dists.gaussian(1))
    monkeypatch.setattr(thm_3_2, "SETTINGS", (gaussian,))
    result = run_check("thm-3.2", profile="smoke", seed=0)
    assert result.status == "inconclusive"
    assert "UnboundedSupportError" in result.summary and "unbounded" in result.summary
    with pytest.raises(dists.UnboundedSupportError):
        sup_gap.constants(gaussian, np.eye(2, 3), np.eye(2, 3))


def _one_setting(draws=8):
    setting = sup_gap.SETTINGS[1]
    key = jax.random.key(3)
    wk, wv = sup_gap.random_weights(key, setting)
    chunk = draws * sup_gap.N_MAX
    pop = sup_gap.population(setting, key, wk, wv, chunk)
    tokens = sup_gap.sample_tokens(setting.distribution, jax.random.fold_in(key, 1), chunk)
    tokens = tokens.reshape(draws, sup_gap.N_MAX, sup_gap.TOKEN_DIM)
    return setting, key, wk, wv, pop, tokens, chunk


def _agreement(setting, key, wk, wv, pop, tokens, chunk):
    res = sup_gap.sup_gaps(tokens, key, sup_gap.demo_weights(setting.n), wk, wv, pop, setting.ball)
    pop_ref, count = sup_gap.reference_population(pop, wk, wv)
    gaps_ref = sup_gap.reference_sup_gaps(tokens, setting.n, wk, wv, pop_ref, setting.ball)
    consts = sup_gap.constants(setting, wk, wv)
    return float(np.max(sup_gap.sup_gap_agreement(res.gap, gaps_ref, res.scale, count, consts.T, consts.C,
                                                  setting.ball)))


def test_a_solver_reporting_too_much_or_too_little_is_caught(monkeypatch):
    problem = _one_setting()
    assert _agreement(*problem) <= 1.0
    original = ik.max_quadratic_in_eigenbasis
    for factor in (1.0 + 1e-6, 1.0 - 1e-6):  # the random probes of the old guard could only catch "too little"
        monkeypatch.setattr(ik, "max_quadratic_in_eigenbasis",
                            lambda *a, f=factor: original(*a)._replace(value=f * original(*a).value))
        jax.clear_caches()
        assert _agreement(*problem) > 1.0, factor
    monkeypatch.undo()
    jax.clear_caches()


def test_dense_solver_and_rademacher_against_the_reference(monkeypatch):
    setting, key, wk, wv, pop, tokens, chunk = _one_setting()
    pop_ref, _ = sup_gap.reference_population(pop, wk, wv)
    assert thm_3_2.dense_agreement(tokens[:2], setting, wk, wv, pop_ref) <= 1.0
    keys = np.asarray(tokens[0, :10]) @ np.asarray(wk).T
    assert thm_3_2.rademacher_exact_figures(key, keys, 1.0, 4000, z=4.5)["ok"]
    original_exact = ik.rademacher_exact
    monkeypatch.setattr(ik, "rademacher_exact", lambda g, r: original_exact(g, r) * np.sqrt(2.0))
    assert not thm_3_2.rademacher_exact_figures(key, keys, 1.0, 4000, z=4.5)["ok"]
    original_dense = ik.max_quadratic_on_ball
    monkeypatch.setattr(ik, "max_quadratic_on_ball",
                        lambda a, b, r: original_dense(a, b, r)._replace(value=original_dense(a, b, r).value + 1e-9))
    assert thm_3_2.dense_agreement(tokens[:2], setting, wk, wv, pop_ref) > 1.0
