"""Trained-model experiments on the quick configuration (one training per module, reused via the cache)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import cli, training
from experiments import common as C
from experiments.data import TaskConfig, sample_prompts
from experiments.models import ModelConfig, attention_weights, init_params, make_tokens
from experiments.selection import greedy_mmd
from iclkd_jax import softmax_attention


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The exact ``--quick`` model, trained once and cached where the CLI will look for it."""
    out = tmp_path_factory.mktemp("experiments")
    trained = training.get_or_train(C.base_train_config(True, 0), out / "cache")
    return out, trained


def test_quick_model_learns(quick):
    _, trained = quick
    prompts = sample_prompts(jax.random.key(123), trained.config.task, 256, n_queries=4)
    mse = float(np.mean(C.prompt_errors(trained, prompts)))
    zero = float(np.mean(np.asarray(prompts.y_query) ** 2))
    assert mse < 0.5 * zero, (mse, zero)


def test_checkpoint_roundtrip(quick):
    out, trained = quick
    again = training.get_or_train(trained.config, out / "cache")
    assert again.from_cache and again.config == trained.config
    for a, b in zip(jax.tree.leaves(trained.params), jax.tree.leaves(again.params), strict=False):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    meta = json.loads((out / "cache" / f"model-{trained.config.fingerprint()}.json").read_text())
    assert meta["seed"] == 0 and meta["train_config"]["model"]["x_dim"] == 2


@pytest.mark.slow
def test_training_is_deterministic():
    cfg = training.TrainConfig(model=ModelConfig(x_dim=2, key_dim=2), task=TaskConfig(x_dim=2, n_demos=4),
                               steps=3, batch_size=4, seed=5)
    a, b = training.train(cfg, chunk=3), training.train(cfg, chunk=3)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=False):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_one_layer_model_is_the_theorem_attention():
    cfg = ModelConfig(x_dim=2, key_dim=3, num_heads=2)
    params = init_params(cfg, jax.random.key(1), jnp.float32, 5)
    p = sample_prompts(jax.random.key(2), TaskConfig(x_dim=2, n_demos=5), 3)
    tokens = make_tokens(cfg, p.x_demos, p.y_demos, p.x_query[:, 0])
    pred = C._predict_jit(cfg, params, tokens)
    for i in range(3):
        lib = sum(softmax_attention(attention_weights(params, 0, h), tokens[i], tokens[i, -1:])[0, 0] for h in range(2))
        np.testing.assert_allclose(float(pred[i]), float(lib), rtol=1e-5, atol=1e-6)


def test_greedy_mmd_first_pick_is_the_best_single_point():
    rng_x = np.asarray(jax.random.normal(jax.random.key(0), (1, 6, 2)))
    ref = np.asarray(jax.random.normal(jax.random.key(1), (1, 5, 2)))
    k = lambda a, b: np.exp(-np.sum((a[:, :, None] - b[:, None]) ** 2, -1) / 2)
    chosen = greedy_mmd(k(rng_x, rng_x), k(rng_x, ref).mean(-1), 3)
    single = [1 - 2 * k(rng_x[:, [c]], ref).mean() for c in range(6)]
    assert chosen[0, 0] == int(np.argmin(single)) and len(set(chosen[0])) == 3


def test_mmd_shift_cli(quick):
    out, _ = quick
    path = out / "ms.json"
    assert cli.main(["mmd-shift", "--quick", "--out", str(out), "--json", str(path), "--quiet"]) == 0
    data = json.loads(path.read_text())
    for field in ("icl_mse_in_distribution", "zero_predictor_mse", "spearman", "spearman_ci", "rows"):
        assert field in data
    assert data["model"]["from_cache"]
    assert data["icl_mse_in_distribution"] < 0.5 * data["zero_predictor_mse"]
    lo, hi = data["spearman_ci"]
    assert -1 <= lo <= hi <= 1
    assert data["thm42_total_violations"] == 0
    assert data["thm31a_trained"]["holds"]
    assert (out / "mmd-shift.md").exists() and (out / "mmd-shift-error-vs-mmd.png").exists()


def test_selection_cli(quick):
    out, _ = quick
    path = out / "sel.json"
    assert cli.main(["selection", "--quick", "--out", str(out), "--json", str(path), "--no-plots", "--quiet"]) == 0
    data = json.loads(path.read_text())
    names = {s["name"] for s in data["strategies"]}
    assert {"mmd", "random", "knn"} <= names
    for s in data["strategies"]:
        assert s["ci"][0] <= s["mse"] <= s["ci"][1]


# multi-layer is the cheapest (one extra model, ~10 s cold) and runs by default; the other three train
# two or three models each (~20 s cold apiece) and run with -m slow.
@pytest.mark.parametrize("name", ["multi-layer",
                                  *(pytest.param(n, marks=pytest.mark.slow)
                                    for n in ("lr-proxy", "weight-norm", "thm31-trained"))])
def test_other_experiments_run(quick, name):
    out, _ = quick
    assert cli.main([name, "--quick", "--out", str(out), "--no-plots", "--quiet"]) == 0
    data = json.loads((out / f"{name}.json").read_text())
    assert data["experiment"] == name
    if name == "multi-layer":
        for model in data["models"]:
            assert model["learned"] and model["icl_mse"] < 0.5 * model["zero_predictor_mse"]
            # Theorem 3.1(a) on every layer's own inputs, at float32 round-off (1e-5: docs/statements.md#hazards, float32)
            assert all(layer["thm31a_max_rel_error"] < 1e-5 for layer in model["layers"])
            # the first layer sees the prompt itself, so k KD steps on the frozen set match it exactly
            assert model["layers"][0]["frozen_set_rel_deviation"] < 1e-5
