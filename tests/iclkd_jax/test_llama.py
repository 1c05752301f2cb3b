"""The llama forward pass on a tiny random model, against a NumPy float64 forward written here.

The attention is the independent reference ``verification.oracles.reference.llama_head_attention``
(complex-number rotations, explicit loops); the rest of the block (RMSNorm, SwiGLU,
residuals, tied read-out) is re-derived below in NumPy.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclkd_jax.llama import (
    LlamaConfig,
    LlamaParams,
    apply_rope,
    config_shapes,
    llama_forward,
)
from verification.oracles import reference

CONFIG = LlamaConfig(vocab_size=50, hidden=24, layers=2, heads=6, kv_heads=2, head_dim=4, ffn=16,
                     rope_base=100.0, rms_eps=1e-5)


def random_params(config, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    arrays = {name: rng.normal(size=shape) / np.sqrt(shape[-1]) for name, shape in config_shapes(config).items()}
    for gain in ("attn_norm", "ffn_norm", "out_norm"):
        arrays[gain] = 1.0 + 0.3 * rng.normal(size=config_shapes(config)[gain])
    arrays["embed"] = rng.normal(size=(config.vocab_size, config.hidden))
    return LlamaParams(**{k: jnp.asarray(v, dtype) for k, v in arrays.items()})


def numpy_forward(config, params, ids):
    p = {k: np.asarray(v, np.float64) for k, v in params._asdict().items()}

    def norm(h, g):
        return h / np.sqrt(np.mean(h * h, axis=-1, keepdims=True) + config.rms_eps) * g

    h = p["embed"][ids]
    heads_out = []
    for layer in range(config.layers):
        x = norm(h, p["attn_norm"][layer])
        heads = reference.llama_head_attention(x, p["wq"][layer], p["wk"][layer], p["wv"][layer],
                                               heads=config.heads, kv_heads=config.kv_heads, base=config.rope_base)
        heads_out.append(heads)
        h = h + np.concatenate(list(heads), axis=1) @ p["wo"][layer].T
        y = norm(h, p["ffn_norm"][layer])
        gate = y @ p["w_gate"][layer].T
        h = h + (gate / (1 + np.exp(-gate)) * (y @ p["w_up"][layer].T)) @ p["w_down"][layer].T
    return norm(h, p["out_norm"]) @ p["embed"].T, np.stack(heads_out)


def test_forward_matches_numpy_float64(x64):
    params = random_params(CONFIG)
    ids = np.array([3, 17, 4, 4, 49, 0, 12, 8, 30])
    out = llama_forward(CONFIG, params, ids)
    logits, heads = numpy_forward(CONFIG, params, ids)
    assert out.logits.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(out.head_outputs), heads, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(out.logits), logits, rtol=0, atol=1e-11 * np.abs(logits).max())
    assert out.attn_inputs.shape == (2, 9, 24) and out.log_partition.shape == out.attention_entropy.shape == (2, 6, 9)
    # the first position attends to itself only: D' = exp(logit), entropy 0
    np.testing.assert_allclose(np.asarray(out.attention_entropy)[:, :, 0], 0.0, atol=1e-12)


def test_float32_stays_float32_and_is_close():
    params32 = random_params(CONFIG, dtype=np.float32)
    ids = np.arange(7)
    out = llama_forward(CONFIG, params32, ids)
    assert out.logits.dtype == jnp.float32 and out.head_outputs.dtype == jnp.float32
    logits, _ = numpy_forward(CONFIG, params32, ids)
    # two layers of width <= 24: a few hundred eps32 relative to the logits' scale
    np.testing.assert_allclose(np.asarray(out.logits), logits, rtol=0, atol=1e-4 * np.abs(logits).max())


def test_padding_after_the_sequence_changes_nothing_before_it(x64):
    params = random_params(CONFIG, seed=1)
    ids = np.array([5, 9, 2, 44, 7])
    short = llama_forward(CONFIG, params, ids)
    padded = llama_forward(CONFIG, params, np.concatenate([ids, [0, 0, 1]]))
    # equal up to the summation order of differently shaped matmuls (a few eps64)
    np.testing.assert_allclose(np.asarray(padded.logits)[:5], np.asarray(short.logits), rtol=0,
                               atol=1e-13 * np.abs(np.asarray(short.logits)).max())


def test_rope_rotates_adjacent_pairs_and_is_relative(x64):
    x = jax.random.normal(jax.random.key(0), (5, 8), jnp.float64)
    positions = jnp.arange(5) + 3
    rotated = apply_rope(x, positions, 10.0)
    np.testing.assert_allclose(np.asarray(rotated), reference.rotary(np.asarray(x), np.asarray(positions), 10.0),
                               atol=1e-14)
    # pair (0, 1) turns by p radians (theta_0 = 1): the adjacent convention, not (0, 4)
    angle = float(positions[0])
    expected = np.array([x[0, 0] * np.cos(angle) - x[0, 1] * np.sin(angle), x[0, 0] * np.sin(angle) + x[0, 1] * np.cos(angle)])
    np.testing.assert_allclose(np.asarray(rotated[0, :2]), expected, atol=1e-14)
    # logits depend on positions only through their difference
    q, k = x[0:1], x[1:2]
    a = apply_rope(q, jnp.array([7]), 10.0) @ apply_rope(k, jnp.array([2]), 10.0).T
    b = apply_rope(q, jnp.array([15]), 10.0) @ apply_rope(k, jnp.array([10]), 10.0).T
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-13)


@pytest.mark.parametrize("bad,match", [
    (lambda p: p._replace(wq=p.wq[:, :-1]), r"params.wq must have shape"),
    (lambda p: p._replace(wk=p.wk.astype(jnp.float32)), r"params.wk has dtype"),
])
def test_bad_params_raise(x64, bad, match):
    with pytest.raises(ValueError, match=match):
        llama_forward(CONFIG, bad(random_params(CONFIG)), np.arange(3))


def test_bad_ids_and_config_raise(x64):
    params = random_params(CONFIG)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 50\)"):
        llama_forward(CONFIG, params, np.array([1, 50]))
    with pytest.raises(ValueError, match="ids must be a non-empty"):
        llama_forward(CONFIG, params, np.zeros((0,), int))
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        LlamaConfig(vocab_size=5, hidden=8, layers=1, heads=3, kv_heads=2, head_dim=4, ffn=4, rope_base=10.0,
                    rms_eps=0.0)
