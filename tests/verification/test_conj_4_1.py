"""conj-4.1: refuted by the linear kernel while the control survives; per-kernel sub-verdicts checked against the
reference, so a broken RBF kernel or median heuristic is a violation although the linear kernel refutes."""

import importlib

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
