"""thm-4.1: holds on the library (smoke profile), and planted library bugs are violations of the batched judgement."""

import importlib

import jax
import numpy as np
import pytest
from _planted import near_duplicate_batch, planted

import iclkd_jax as ik
from verification.cases.shift_cases import SHAPES, draw_shift_batches
from verification.engine.runner import run_check
from verification.statements.thm_4_1 import check as thm_4_1

mmd_module = importlib.import_module("iclkd_jax.mmd")  # the package exports a function named mmd


def test_holds_and_is_attained_with_an_isometric_value_map():
    result = run_check("thm-4.1", profile="smoke", seed=0)
    assert result.status == "holds", result.summary
    figures = result.figures
    assert result.cases >= 2 * 3 * thm_4_1.SMOKE_CASES
    assert result.worst <= 1 + 1e-9 and figures["max_ratio_random_wv"] < 1.0
    assert abs(result.tightness - 1.0) < 1e-8 and figures["max_abs_tight_ratio_minus_1"] < 1e-8
    assert max(figures["max_agreement_in_round_off_units"].values()) <= 1.0
    assert figures["max_mmd_tilde"] <= 2.0
    assert figures["max_logit"] > 100  # logits of a few hundred are exercised
    for family in figures["linear_growth"].values():  # linear growth: exponent 1, slope at most the bound's
        lo, hi = family["exponent_dw"][1:]
        assert abs(family["exponent_dw"][0] - 1) < 1e-3 and lo <= family["exponent_dw"][0] <= hi
        assert family["max_slope_ratio"] <= 1 + 1e-6  # round-off at t = 1e-3, amplified 3x by the extrapolation
    attained = figures["linear_growth"]["translation (attained)"]["slope_ratio_observed_over_bound"]
    assert abs(attained[0] - 1) < 1e-6
    assert set(result.worst_case) == {"wk", "wv", "target", "prompt", "log_eta"}


@pytest.fixture(scope="module")
def batches():
    return draw_shift_batches(jax.random.key(5), SHAPES[2], 128)


@pytest.fixture
def fresh_compilation():
    """Planted bugs take effect only in programs traced after them (the tests clear the caches after planting)."""
    yield
    jax.clear_caches()


def _half_difference(original):
    def planted(*args, **kwargs):
        op = original(*args, **kwargs)
        return op._replace(coef=0.5 * op.coef)
    return planted


def _product_without_linear_factor(original):
    def planted(kernel, ra, rb, *rest):  # mmd2's tile of the product kernel: factor x.x' dropped
        if kernel.kind == "product":
            return None, ra[1] @ rb[1].T
        return original(kernel, ra, rb, *rest)
    return planted


def _normalisation(unbiased_weights):
    def planted(n, m, unbiased):
        if unbiased_weights:  # 1/n^2 -> 1/(n(n-1)) in the biased estimator
            return (1.0 / (n * (n - 1)), 1.0 / (m * (m - 1)), -2.0 / (n * m))
        return (1.0 / n**2, 1.0 / m**2, +2.0 / (n * m))  # the cross term's sign flipped
    return planted


PLANTED = {
    "ΔW at half its size": (ik, "distilled_weight_difference", _half_difference(ik.distilled_weight_difference)),
    "x ⊗ dropped in the product kernel's MMD": (mmd_module, "_tile", _product_without_linear_factor(mmd_module._tile)),
    "1/n^2 -> 1/(n(n-1)) in mmd2": (mmd_module, "_coefficients", _normalisation(True)),
    "cross term's sign flipped in mmd2": (mmd_module, "_coefficients", _normalisation(False)),
}


@pytest.mark.parametrize("bug", list(PLANTED))
def test_planted_library_bugs_are_violations(bug, batches, monkeypatch, fresh_compilation):
    general, tight = batches
    assert float(np.max(thm_4_1.judge(tight, None, attained=True, chunk=128).score)) <= 1.0
    monkeypatch.setattr(*PLANTED[bug])
    jax.clear_caches()
    scores = [thm_4_1.judge(b, None, attained=a, chunk=128) for b, a in ((general, False), (tight, True))]
    assert max(float(np.max(j.score)) for j in scores) > 1.0, bug
    assert max(float(np.max(j.agreement_score)) for j in scores) > 1.0, bug  # the reference disagrees


def test_estimators_swapped_is_a_violation(batches, monkeypatch, fresh_compilation):
    original = ik.mmd2

    def swapped(x, y, kernel, *, estimator="biased", **kwargs):
        return original(x, y, kernel, estimator="unbiased" if estimator == "biased" else "biased", **kwargs)

    monkeypatch.setattr(ik, "mmd2", swapped)
    jax.clear_caches()
    judged = thm_4_1.judge(batches[1], None, attained=True, chunk=128)
    assert float(np.max(judged.score)) > 1.0


def test_draws_are_reproducible():
    a, _ = draw_shift_batches(jax.random.key(1), SHAPES[0], 16)
    b, _ = draw_shift_batches(jax.random.key(1), SHAPES[0], 16)
    assert all(np.array_equal(x, y) for x, y in zip(a.arrays(), b.arrays(), strict=False))


def test_a_case_below_round_off_resolution_is_judged_on_its_intervals_not_violated(monkeypatch):
    """MMD^2 below round-off: a bound of exactly 0 from the library's MMD^2 would be a false violation (inf ratio)."""
    batch = near_duplicate_batch()
    judged = thm_4_1.judge(batch, None, attained=False, chunk=64)
    lib = thm_4_1.library_side(batch, None, 64)
    assert np.any(lib["mmd2"] <= 0)  # the hazard is present: MMD^2 <= 0 at round-off although the true one is > 0
    assert not np.any(judged.resolved)
    assert float(np.max(judged.score)) <= 1.0 and np.all(np.isfinite(judged.ratio))


def test_a_real_violation_below_round_off_resolution_is_still_violated(monkeypatch):
    """The same cases with ΔW taken against a prompt moved by 0.5: the library's ||ΔW|| exceeds every bound that
    the round-off of its MMD^2 allows."""
    batch = near_duplicate_batch()

    def moved_prompt(original):
        return lambda weights, target, prompt, **kwargs: original(weights, target, prompt + 0.5, **kwargs)

    with planted(monkeypatch, "distilled_weight_difference", moved_prompt):
        judged = thm_4_1.judge(batch, None, attained=False, chunk=64)
    assert not np.any(judged.resolved)
    assert float(np.max(judged.bound_score)) > 1.0
