"""conj-4.1: refuted by the linear kernel while the control survives; per-kernel sub-verdicts checked against the
reference, so a broken RBF kernel or median heuristic is a violation although the linear kernel refutes."""

import importlib
import math

import jax
import numpy as np
import pytest

import iclkd_jax as ik
from verification.cases import mmd_agreement
from verification.engine.runner import run_check
from verification.statements.conj_4_1 import check as conj_4_1

mmd_module = importlib.import_module("iclkd_jax.mmd")  # the package exports a function named mmd


def test_refuted_by_the_linear_kernel_while_the_control_survives():
    result = run_check("conj-4.1", profile="smoke", seed=0)
    assert result.status == "refuted", result.summary
    per_kernel = result.figures["per_kernel"]
    assert per_kernel["linear"]["refuted"] and not per_kernel[conj_4_1.CONTROL]["refuted"]
    assert per_kernel[conj_4_1.CONTROL]["sup_c_hat"] <= 1.0 + 1e-9  # Theorem 4.1
    assert all(v["agrees_with_reference"] for v in per_kernel.values())
    for v in per_kernel.values():  # the constant found is the reference's, up to the cancellation of a tiny MMD^2
        if v["sup_finite_c_hat"] is not None:  # (rbf-100x: MMD^2 ~ 1e-9 of sum|terms|, so ~1e-7 relative)
            assert v["sup_finite_c_hat"] == pytest.approx(v["reference_c_hat_at_sup"], rel=1e-5)
    counterexample = result.counterexample
    assert counterexample["kernel"] == "linear"
    assert counterexample["mmd_zero"] and counterexample["dw_certified"]
    assert abs(counterexample["mmd2"]) < 1e-12 and counterexample["mean_difference"] < 1e-12
    assert counterexample["family"] == "scale"  # equal means, different covariance
    assert result.worst_case["kernel"] == "linear" and "wk" in result.worst_case
    # a Gaussian kernel's MMD vanishes as its bandwidth grows: the constant grows with it
    by_bandwidth = result.figures["sup_c_hat_by_rbf_bandwidth"]
    assert by_bandwidth[100.0] > by_bandwidth[10.0] > by_bandwidth[1.0]
    perm = result.figures["permutation_test"]
    assert perm["size_interval"][0] <= perm["expected_size"] <= perm["size_interval"][1] and perm["power"] > 0.9


@pytest.fixture(scope="module")
def pairs():
    return conj_4_1.draw_pairs(jax.random.key(4), conj_4_1.SHAPES[1], 64)


def _max_agreement(pairs, kernel):
    return float(np.max(conj_4_1.measure_pairs(pairs, 64).agreement[kernel]))


def test_a_broken_rbf_kernel_is_noticed(pairs, monkeypatch):
    assert _max_agreement(pairs, "rbf-1x") <= 1.0
    original = mmd_module._scaled

    def planted(kernel, a, centre):  # mmd2's RBF rows scaled by sqrt(2) / h: exp(-|x-y|^2 / h^2), the factor 2 dropped
        rows = original(kernel, a, centre)
        return rows * 2**0.5 if kernel.kind == "rbf" else rows

    monkeypatch.setattr(mmd_module, "_scaled", planted)
    jax.clear_caches()
    assert _max_agreement(pairs, "rbf-1x") > 1.0
    jax.clear_caches()


def test_a_broken_median_heuristic_is_noticed(pairs, monkeypatch):
    original = ik.median_bandwidth
    monkeypatch.setattr(ik, "median_bandwidth", lambda x, y=None, **k: original(x, y, **k) ** 2)  # squared distances
    measured = conj_4_1.measure_pairs(pairs, 64)
    assert float(np.max(measured.median_agreement)) > 1.0 and float(np.max(measured.agreement["rbf-1x"])) > 1.0


def test_permutation_test_reference_size_and_power():
    figures = mmd_agreement.permutation_test(jax.random.key(1), 40, level=1e-5)
    assert figures.ok, figures


# quick seed 77's cancelling pair: x . y = 1.8e-4 against sum|x_d y_d| = 2.2 (condition 1.2e4)
SEED77_X = np.array([[-0.5884512185660321, -0.5562764827000931, 0.763172494664628, 0.5451776306799737]])
SEED77_Y = np.array([[-1.1474515435647676, -0.7905704265625072, -0.6629488862467876, -1.1168297812598758]])
SEED77_WK = np.array([[0.23635573653198302, -1.1234900580368452, -0.11254378801575836, 0.5648774933650258],
                      [0.01470892993487612, -0.07031232886160675, 0.07188028288786348, -0.3391447771283649],
                      [0.05779715054703807, -0.01460464999405385, 0.6267897334179761, 0.3827542380860518]])


def test_gram_budget_covers_a_cancelling_dot_product():
    """A dot product's round-off is ``eps sum|x_d y_d|`` whatever ``|x . y|``: the seed-77 pair agrees, and its
    library error is far above ``eps |k| (1 + |log k|)`` (the budget that called it a disagreement)."""
    dot = float(SEED77_X[0] @ SEED77_Y[0])
    assert np.sum(np.abs(SEED77_X * SEED77_Y)) / abs(dot) > 1e4
    agreement = mmd_agreement.gram_agreement(SEED77_X, SEED77_Y, SEED77_WK, bandwidth=1.0)
    assert max(agreement.values()) <= 1.0, agreement
    # the library's own round-off on this pair, exact reference from math.fsum
    library = float(np.asarray(ik.linear_kernel()(jax.numpy.asarray(SEED77_X), jax.numpy.asarray(SEED77_Y)))[0, 0])
    exact = math.fsum(SEED77_X[0] * SEED77_Y[0])
    assert library != exact  # a real round-off, not a bit-identical pair
    assert abs(library - exact) <= 4 * np.finfo(float).eps * np.sum(np.abs(SEED77_X * SEED77_Y))
    assert abs(library - exact) > 0.01 * np.finfo(float).eps * abs(exact) * (1 + abs(math.log(abs(exact))))


@pytest.mark.parametrize("kind", ["linear", "exp", "product"])
def test_gram_budget_still_sees_a_relative_error_of_1e_9(kind):
    """The wider scale stays a round-off scale: on the cancelling pair a relative error of 1e-9 (a float32-sized
    slip in the products) is a disagreement."""
    u, v = (SEED77_X @ SEED77_WK.T, SEED77_Y @ SEED77_WK.T) if kind == "exp" else (SEED77_X, SEED77_Y)
    _, log_abs = mmd_agreement.ref.log_gram(kind, u, v, wk=SEED77_WK)
    scale = mmd_agreement.gram_round_off_scale(kind, u, v, log_abs, wk=SEED77_WK)
    assert mmd_agreement._units(1e-9 * np.exp(log_abs), scale) > 1.0


@pytest.mark.parametrize("kind", ["rbf", "linear", "exp", "product"])
def test_gram_round_off_scale_batched_and_in_log_units_equals_the_single_case(kind):
    """measure_pairs calls the scale on a batch in units of exp(log sum|terms|): the same numbers per case."""
    rng = np.random.default_rng(0)
    x, wk = rng.standard_normal((3, 5, 4)), rng.standard_normal((3, 2, 4))
    log_unit = rng.standard_normal(3)
    params = {"bandwidth": np.ones(3)} if kind == "rbf" else {"wk": wk}
    batched_log = mmd_agreement.ref.log_gram(kind, x, x, **params)[1]
    batched = mmd_agreement.gram_round_off_scale(kind, x, x, batched_log, wk=wk, log_unit=log_unit[:, None, None])
    for b in range(3):
        single_params = {"bandwidth": 1.0} if kind == "rbf" else {"wk": wk[b]}
        log_abs = mmd_agreement.ref.log_gram(kind, x[b], x[b], **single_params)[1]
        single = mmd_agreement.gram_round_off_scale(kind, x[b], x[b], log_abs, wk=wk[b])
        np.testing.assert_allclose(batched[b] * np.exp(log_unit[b]), single, rtol=1e-12)
