"""A verdict is about a finite inequality: a NaN or an infinity is status ``error`` naming the quantity and the case;
statistical judgements take their level from the declared run-wide false-alarm budget; the thm-4.1 growth bound and
the reference KD risk hold where the generator's tuned-to-seed-0 constants and a float64 product did not."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from verification.core import budget
from verification.core.errors import NonFiniteError
from verification.core.model import PROFILES, CheckResult
from verification.core.tolerances import require_finite
from verification.engine import runner
from verification.engine.plugins import all_checks
from verification.engine.runner import run_check
from verification.io import report
from verification.oracles import reference as ref
from verification.statements.thm_4_1 import check as thm_4_1
from verification.statements.thm_4_2 import check as thm_4_2


def _plant_overflowing_case(monkeypatch, *, bypass_rejection: bool):
    """thm-4.2's first random head gets ``log eta = 700``: its KD risk, ``~ e^1400``, is beyond float64."""
    original = thm_4_2.draw_shift_batches

    def planted(key, shape, size, **kwargs):
        general, tight = original(key, shape, size, **kwargs)
        general.log_eta[0] = 700.0
        return general, tight

    monkeypatch.setattr(thm_4_2, "draw_shift_batches", planted)
    if bypass_rejection:
        monkeypatch.setattr(thm_4_2, "in_float64_range", lambda cases: np.ones(cases.batch.size, bool))


def test_a_planted_overflowing_case_is_an_error_naming_the_quantity_not_a_violation(monkeypatch):
    _plant_overflowing_case(monkeypatch, bypass_rejection=True)
    result = run_check("thm-4.2", profile="smoke", seed=0)
    assert result.status == "error", result.summary
    non_finite = result.figures["non_finite"]
    assert "KD risk" in non_finite["quantity"] and non_finite["value"] == math.inf
    assert non_finite["case"]["index"] == 0 and non_finite["case"]["log_eta"] == 700.0
    assert "non-finite library KD risk" in result.summary


def test_the_generator_rejects_the_overflowing_case_and_counts_it(monkeypatch):
    _plant_overflowing_case(monkeypatch, bypass_rejection=False)
    result = run_check("thm-4.2", profile="smoke", seed=0)
    assert result.status == "holds", result.summary
    # the first head of each shape, counted once under its first reason (its predictions overflow too)
    assert result.figures["rejected_cases"] == {thm_4_2.RISK_OUT_OF_RANGE: 3, thm_4_2.PREDICTION_OUT_OF_RANGE: 0}


def test_a_nan_in_the_library_output_is_an_error_naming_quantity_and_case(monkeypatch):
    original = thm_4_1.library_side

    def poisoned(batch, mutant, chunk):
        lib = original(batch, mutant, chunk)
        lib["mmd2"] = lib["mmd2"].copy()
        lib["mmd2"][5] = np.nan
        return lib

    monkeypatch.setattr(thm_4_1, "library_side", poisoned)
    result = run_check("thm-4.1", profile="smoke", seed=0)
    assert result.status == "error", result.summary
    assert result.figures["non_finite"]["quantity"] == "library MMD_k^2"
    assert result.figures["non_finite"]["case"]["index"] == 5 and "wk" in result.figures["non_finite"]["case"]


def test_the_runner_turns_a_nan_in_a_result_into_an_error():
    def nan_figure():
        return CheckResult(id="x", kind="theorem", status="holds", cases=1, worst=0.5, worst_label="-",
                           tolerance=1.0, figures={"inner": {"ratio": [0.1, float("nan")]}})

    result = runner.guarded(nan_figure, check_id="x", kind="theorem", seed=0)
    assert result.status == "error" and result.figures["non_finite"]["quantity"] == "x result field figures.inner.ratio[1]"

    def infinite_tolerance():
        return CheckResult(id="x", kind="theorem", status="violated", cases=1, worst=2.0, worst_label="-",
                           tolerance=math.inf)

    assert runner.guarded(infinite_tolerance, check_id="x", kind="theorem", seed=0).status == "error"


def test_require_finite_allows_log_zero_and_a_failed_inequality_only_where_asked():
    require_finite({"score": np.array([0.5, math.inf])}, allow_inf=True)
    require_finite({}, logs={"log value": np.array([-math.inf, 1.0])})
    with pytest.raises(NonFiniteError, match="log value"):
        require_finite({}, logs={"log value": np.array([math.inf])})
    with pytest.raises(NonFiniteError, match="score"):
        require_finite({"score": np.array([0.5, math.nan])}, allow_inf=True)
    with pytest.raises(NonFiniteError) as caught:
        require_finite({"a": np.ones(3), "b": np.array([[1.0, 2.0], [1.0, math.inf]])}, lambda i: {"row": i})
    assert (caught.value.quantity, caught.value.case) == ("b", {"index": 1, "row": 1})


@pytest.mark.parametrize("profile", ["smoke", "quick", "default"])
def test_the_budget_is_in_the_json_report_and_the_levels_add_up_to_it(profile):
    split = report.to_json([], profile=profile, seed=0)["false_alarm_budget"]
    assert split["family_wise_false_violated"] == budget.FALSE_ALARM_BUDGET == 1e-3
    judgements = [j for per_check in split["checks"].values() for j in per_check.values()]
    assert sum(j["count"] for j in judgements) == split["judgements"] > 0
    assert math.isclose(sum(j["count"] * j["level"] for j in judgements), budget.FALSE_ALARM_BUDGET, rel_tol=1e-12)
    for j in judgements:  # each z is the normal quantile of its level, one- or two-sided
        assert math.isclose(j["sides"] * _normal_upper_tail(j["z"]), j["level"], rel_tol=1e-9)
    assert {"thm-3.2", "lemma-features", "conj-4.1"} <= set(split["checks"])
    assert "false-alarm budget: P(any false violated) <= 0.001" in report.budget_line(profile)
    assert "## False-alarm budget" in report.markdown([], profile=profile, seed=0)


def _normal_upper_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def test_a_check_takes_its_z_from_the_budget():
    checks = all_checks()
    profile = PROFILES["quick"]
    alpha = budget.level_each(checks, profile)
    lemma = checks["lemma-features"].statistical_judgements(profile)
    assert lemma["unbiased"].sides == 2 and lemma["orthogonal-no-worse"].sides == 1
    from verification.core.model import RunContext

    ctx = RunContext(profile, 0, "lemma-features")
    assert ctx.level() == alpha
    assert math.isclose(ctx.z("unbiased"), budget.normal_quantile(alpha / 2))
    assert math.isclose(ctx.z("orthogonal-no-worse"), budget.normal_quantile(alpha))


def _exact_norm(values, keys_matrix, prompt, target) -> mpmath.mpf:
    """``||(1/n) sum Psi(prompt_i) - (1/m) sum Psi(target_j)||`` in 60 digits, ``Psi(x) = V x ⊗ phi(K x)``."""
    z = [[mpmath.mpf(float(v)) for v in row] for row in np.concatenate([prompt, target])]
    coef = [mpmath.mpf(1) / len(prompt)] * len(prompt) + [-mpmath.mpf(1) / len(target)] * len(target)
    project = lambda matrix, row: [mpmath.fsum(mpmath.mpf(float(a)) * b for a, b in zip(r, row, strict=False))  # noqa: E731
                                   for r in matrix]
    v, k = [project(values, row) for row in z], [project(keys_matrix, row) for row in z]
    dot = lambda a, b: mpmath.fsum(p * q for p, q in zip(a, b, strict=False))  # noqa: E731
    return mpmath.sqrt(mpmath.fsum(coef[i] * coef[j] * dot(v[i], v[j]) * mpmath.exp(dot(k[i], k[j]))
                                   for i in range(len(z)) for j in range(len(z))))


def test_the_growth_bound_covers_a_case_with_a_large_second_derivative():
    with mpmath.workdps(60):
        rng = np.random.default_rng(3)
        x = rng.normal(size=(4, 4))
        wk, wv = 1.5 * rng.normal(size=(2, 4)), 0.5 * rng.normal(size=(2, 4))
        velocity = x - x.mean(axis=0)  # the scale family; logits ||W^K x||^2 up to 68
        t0 = thm_4_1.FAMILY_T0
        f = [_exact_norm(wv, wk, x + t0 * 2**k * velocity, x) for k in range(3)]
        exponent = float((-2 * mpmath.log(f[0]) + 3 * mpmath.log(f[1]) - mpmath.log(f[2])) / mpmath.log(2))
    bound = thm_4_1.growth_error_bounds(wk[None], wv[None], x[None], velocity[None], np.array([float(mpmath.log(f[0]))]),
                                        t0, round_off=np.zeros((1, 3)))
    assert bound["resolved"][0]
    assert 1e-3 < abs(exponent - 1) <= bound["exponent"][0]  # the old constant 1e-3 called this true case violated


def test_reference_kd_risk_at_huge_residuals_is_finite_and_exact():
    rng = np.random.default_rng(0)
    wk, wv = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    tokens, reference_rows = rng.normal(size=(4, 3)), rng.normal(size=(3, 3))
    with mpmath.workdps(50):
        def exact_log_risk(log_eta):
            keys = [[mpmath.mpf(float(a)) for a in row] for row in tokens @ wk.T]
            vals = [[mpmath.mpf(float(a)) for a in row] for row in tokens @ wv.T]
            total = mpmath.mpf(0)
            for _x, kx, tx in zip(reference_rows, reference_rows @ wk.T, reference_rows @ wv.T, strict=False):
                scale = 2 * mpmath.exp(mpmath.mpf(log_eta)) / len(tokens)
                weights = [mpmath.exp(mpmath.fsum(mpmath.mpf(float(a)) * b for a, b in zip(kx, k, strict=False))) for k in keys]
                prediction = [scale * mpmath.fsum(w * v[a] for w, v in zip(weights, vals, strict=False)) for a in range(len(tx))]
                total += mpmath.fsum((mpmath.mpf(float(t)) - p) ** 2 for t, p in zip(tx, prediction, strict=False))
            return mpmath.log(total / len(reference_rows))

        # log eta = 353.9: each row's squared residual is under float64's 1.8e308, their sum over the 3 rows is not
        exact = exact_log_risk(353.9)
        risk = ref.kd_risk(wk, wv, tokens, np.float64(353.9), reference_rows)
        assert np.isfinite(risk) and abs(math.log(risk) - float(exact)) < 1e-12
        # log eta = 1000: the risk is e^2000, beyond float64; its log is exact
        log_risk = ref.log_kd_risk(wk, wv, tokens, np.float64(1000.0), reference_rows)
        assert abs(float(log_risk) - float(exact_log_risk(1000.0))) < 1e-12 * 2000
    with np.errstate(over="ignore"):
        residual = reference_rows @ wv.T - ref.distilled_prediction(wk, wv, tokens, np.float64(353.9), reference_rows)
        assert not np.isfinite(np.mean(np.sum(residual * residual, axis=-1)))  # the float64 product this replaces


def test_reference_products_with_a_large_exponential_overflow_only_with_the_value():
    assert ref.times_exp(np.array([1e-5]), 720.0)[0] == pytest.approx(1e-5 * math.exp(360.0) * math.exp(360.0))
    assert ref.times_exp(np.array([2.0]), 720.0)[0] == math.inf  # the value itself is beyond float64
    # f_S(x) = (2 eta / N) sum_i v_i exp(logit): eta = e^715 and values of size 1e-8 give ~1e303, finite
    wk, wv = np.zeros((1, 2)), np.array([[1e-8, 0.0]])
    tokens = np.array([[1.0, 0.0], [1.0, 0.0]])
    prediction = ref.distilled_prediction(wk, wv, tokens, np.float64(715.0), np.array([[0.0, 1.0]]))
    assert prediction[0, 0] == pytest.approx(2 * 1e-8 * math.exp(357.5) * math.exp(357.5))
