import math

import jax
import jax.numpy as jnp
import pytest

from iclkd_jax import features
from verification.engine.runner import run_check


def test_holds_on_the_real_implementation():
    result = run_check("lemma-features", profile="smoke", seed=0)
    assert result.status == "holds", result.summary
    f = result.figures
    for name, (slope, se) in f["slopes_[value,se]"].items():
        assert -0.6 <= slope <= -0.4, (name, slope, se)
    assert max(f["mean_rel_error_max"].values()) < 0.5
    assert f["taylor_max_error_over_remainder"] <= 1.0 and f["taylor_cases"] >= 8
    assert max(f["feature_maps_vs_reference_over_tolerance"].values()) <= 1.0
    assert {k.rsplit("_", 1)[0] for k in f["feature_maps_vs_reference_over_tolerance"]} == {
        "positive", "orthogonal", "trig", "taylor", "taylor2", "identity"}
    needed = f["m_needed_for_10pct"]
    # the exp(|u+z|^2) growth of the features needed is reported, and it grows
    predicted = [needed[k]["predicted"] for k in sorted(needed)]
    assert predicted == sorted(predicted) and predicted[-1] > 100 * predicted[0]


def _m_instead_of_sqrt_m(original):
    def feats(feature_map, u):
        phi = original(feature_map, u)
        if feature_map.kind == "positive":
            return phi / math.sqrt(feature_map.omega.shape[0])   # m^{-1} instead of m^{-1/2}
        return phi
    return feats


def _orthogonal_fixed_norms(original):
    def rows(key, num_features, key_dim, orthogonal, dtype):
        g = original(key, num_features, key_dim, orthogonal, dtype)
        if not orthogonal:
            return g
        return g / jnp.linalg.norm(g, axis=-1, keepdims=True) * math.sqrt(key_dim)   # no chi norms: biased
    return rows


@pytest.mark.parametrize("name, make", [
    ("_features", _m_instead_of_sqrt_m),
    pytest.param("_gaussian_rows", _orthogonal_fixed_norms, marks=pytest.mark.slow)])
def test_planted_feature_map_bugs_are_violations(monkeypatch, name, make):
    monkeypatch.setattr(features, name, make(getattr(features, name)))
    jax.clear_caches()
    try:
        result = run_check("lemma-features", profile="smoke", seed=0, shrink=False)
    finally:
        monkeypatch.undo()
        jax.clear_caches()
    assert result.status == "violated", result.summary
