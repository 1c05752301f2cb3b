import dataclasses

import numpy as np
import pytest

from iclkd_jax import distributions as dists
from verification import sup_gap
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


def test_unbounded_distribution_is_refused(monkeypatch):
    gaussian = dataclasses.replace(thm_3_2.SETTINGS[0], name="gaussian", distribution=dists.gaussian(1))
    monkeypatch.setattr(thm_3_2, "SETTINGS", (gaussian,))
    result = run_check("thm-3.2", profile="smoke", seed=0)
    assert result.status == "inconclusive"
    assert "UnboundedSupportError" in result.summary and "unbounded" in result.summary
    with pytest.raises(dists.UnboundedSupportError):
        sup_gap.constants(gaussian, np.eye(2, 3), np.eye(2, 3))
