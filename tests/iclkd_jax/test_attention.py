"""Softmax attention and the KD decomposition (docs/statements.md#thm-3-1a, Theorem 3.1(a) and the lemma)."""

import chex
import jax
import jax.numpy as jnp
import np_reference as ref
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kd_problems import problem as kd_problem

import iclkd_jax as ik

EPS64 = float(np.finfo(np.float64).eps)
D, DK, DV = 4, 3, 2          # one small shape pool keeps compilation bounded
N_POOL, M_POOL, Q = (2, 5), (0, 3), 4


def problem(key, n=5, m=3, q=Q, *, d=D, dk=DK, dv=DV, scale=1.0, dtype=jnp.float64):
    kw, kd, kc, kq = jax.random.split(key, 4)
    w = ik.random_attention_weights(kw, token_dim=d, key_dim=dk, value_dim=dv, scale=scale, dtype=dtype)
    return (w, jax.random.normal(kd, (n, d), dtype), jax.random.normal(kc, (m, d), dtype),
            jax.random.normal(kq, (q, d), dtype))


def max_abs_logit(w, tokens, queries):
    return float(np.max(np.abs(ref.f64(queries @ w.wq.T) @ ref.f64(tokens @ w.wk.T).T)))


def float64_tol(w, tokens, queries):
    # rounding of the logits, |delta l| <~ (2d + d_k) eps |l|, enters exp(l - max) as a relative error
    return 4 * (2 * D + DK) * EPS64 * (1.0 + max_abs_logit(w, tokens, queries))


@pytest.mark.parametrize("m", M_POOL)
def test_kd_decomposition_matches_numpy_reference(key, m):
    w, demos, context, queries = problem(key, m=m)
    got = ik.kd_decomposition(w, demos, context, queries)
    want = ref.attention_parts(*w, demos, context, queries)
    tol = float64_tol(w, jnp.concatenate([demos, context]), queries)
    vscale = float(np.max(np.abs(ref.f64(demos @ w.wv.T))))
    assert ref.rel_err(got.w0_out, want["w0_out"], vscale) <= tol
    assert ref.rel_err(got.dw_out, want["dw_out"], vscale) <= tol
    # log D' and log eta: absolute error of a log-sum-exp ~ eps * max|logit|
    for field, name in (("log_partition", "log_partition"), ("log_eta", "log_eta"),
                        ("attention_entropy", "entropy")):
        assert ref.rel_err(getattr(got, field), want[name], 1.0) <= tol, field
    if m == 0:
        assert np.all(np.asarray(got.log_eta_context) == -np.inf)
        assert np.all(np.asarray(got.dw_out) == 0.0)
    else:
        assert ref.rel_err(got.log_eta_context, want["log_eta_context"], 1.0) <= tol


@pytest.mark.parametrize("m", M_POOL)
def test_decomposition_sums_to_attention_float64(key, m):
    """Theorem 3.1(a): Attn(x') over [X_D; X_Q] = W_0 phi(q) + ΔW phi(q), ~1e-12 relative."""
    w, demos, context, queries = problem(key, m=m)
    tokens = jnp.concatenate([demos, context])
    attn = ik.softmax_attention(w, tokens, queries)
    dec = ik.kd_decomposition(w, demos, context, queries)
    assert ref.rel_err(dec.output, attn) <= float64_tol(w, tokens, queries) <= 1e-12
    assert ref.rel_err(attn, ref.attention_parts(*w, tokens, None, queries)["w0_out"]) <= 1e-12


def test_context_none_equals_zero_rows(key):
    w, demos, context, queries = problem(key, m=0)
    a = ik.kd_decomposition(w, demos, None, queries)
    b = ik.kd_decomposition(w, demos, context, queries)
    chex.assert_trees_all_equal(a, b)
    assert ik.log_partition(w, demos, queries).shape == (Q,)
    np.testing.assert_array_equal(ik.log_partition(w, demos, queries), a.log_partition)


def test_matches_jax_dot_product_attention(key):
    """Independent JAX reference; our logits have no 1/sqrt(d_k), hence scale=1.0 (needs d_v = d_k)."""
    w, demos, context, queries = problem(key, dv=DK)
    tokens = jnp.concatenate([demos, context])
    want = jax.nn.dot_product_attention((queries @ w.wq.T)[None, :, None, :], (tokens @ w.wk.T)[None, :, None, :],
                                        (tokens @ w.wv.T)[None, :, None, :], scale=1.0)[0, :, 0, :]
    got = ik.softmax_attention(w, tokens, queries)
    # jax.nn.dot_product_attention casts the logits to float32 for its softmax even for float64
    # inputs (jax/_src/nn/functions.py), so this reference has float32 accuracy only
    assert np.max(np.abs(ref.f64(got) - ref.f64(want))) <= ref.float32_attention_tol(*w, tokens, queries)
    assert want.dtype == jnp.float64 and got.dtype == jnp.float64


@pytest.mark.parametrize("m", M_POOL)
def test_float32_in_float32_out_with_derived_tolerance(key, m):
    w, demos, context, queries = problem(key, m=m, dtype=jnp.float32)
    tokens = jnp.concatenate([demos, context])
    dec = ik.kd_decomposition(w, demos, context, queries)
    attn = ik.softmax_attention(w, tokens, queries)
    for leaf in jax.tree_util.tree_leaves(dec) + [attn]:
        assert leaf.dtype == jnp.float32
    want = ref.attention_parts(*w, demos, context, queries)
    tol = ref.float32_attention_tol(*w, tokens, queries)
    assert np.max(np.abs(ref.f64(dec.output) - (want["w0_out"] + want["dw_out"]))) <= tol
    assert np.max(np.abs(ref.f64(dec.w0_out) - want["w0_out"])) <= tol
    assert np.max(np.abs(ref.f64(attn) - ref.f64(dec.output))) <= 2 * tol
    # log D' in float32: logit error delta (see float32_attention_tol) plus the log's own rounding
    u32 = float(np.finfo(np.float32).eps) / 2
    lmax = max_abs_logit(w, tokens, queries)
    assert np.max(np.abs(ref.f64(dec.log_partition) - want["log_partition"])) <= 4 * (2 * D + DK + 2) * u32 * (1 + lmax)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_logits_of_1e3_are_finite_and_exact(sign):
    """Logits up to ±1e3 in float64 (exp overflows at 709): the log-space reference agrees."""
    w = ik.AttentionWeights(jnp.eye(2), jnp.eye(2), jnp.eye(2))
    demos = jnp.array([[31.0, 0.5], [0.4, 31.5], [-31.0, 2.0], [20.0, 20.0], [30.0, -3.0]])
    context = jnp.array([[31.2, 1.0], [-5.0, -30.0], [0.0, 0.0]])
    queries = sign * jnp.array([[32.0, 0.0], [0.0, 32.0], [22.0, 22.0], [-32.0, 1.0]])
    dec = ik.kd_decomposition(w, demos, context, queries)
    want = ref.attention_parts(*w, demos, context, queries)
    lmax = max_abs_logit(w, jnp.concatenate([demos, context]), queries)
    assert 900 < lmax < 1100
    for leaf in jax.tree_util.tree_leaves(dec):
        assert np.all(np.isfinite(np.asarray(leaf)) | (np.asarray(leaf) == -np.inf))
    tol = 8 * 3 * EPS64 * (1 + lmax)   # relative error of exp(l - max) ~ eps |l|
    assert ref.rel_err(dec.w0_out, want["w0_out"], 32.0) <= tol
    assert ref.rel_err(dec.dw_out, want["dw_out"], 32.0) <= tol
    assert ref.rel_err(dec.log_partition, want["log_partition"], 1.0) <= tol
    assert ref.rel_err(dec.log_eta, want["log_eta"], 1.0) <= tol
    assert np.all(np.abs(np.asarray(dec.log_partition)) > 700)    # D' itself would overflow or underflow


@given(n=st.sampled_from(N_POOL), m=st.sampled_from(M_POOL), seed=st.integers(0, 2**31 - 1),
       scale=st.sampled_from([0.3, 1.0, 3.0]))
def test_property_convex_combination_and_eta(n, m, seed, scale):
    """Attention is a convex combination of the values; eta = N/(2D') in log space; entropy in [0, log(N+M)]."""
    w, demos, context, queries = problem(jax.random.key(seed), n=n, m=m, scale=scale)
    dec = ik.kd_decomposition(w, demos, context, queries)
    values = ref.f64(jnp.concatenate([demos, context]) @ w.wv.T)
    out = ref.f64(dec.output)
    slack = 1e-12 * np.max(np.abs(values))
    assert np.all(out <= values.max(0) + slack) and np.all(out >= values.min(0) - slack)
    np.testing.assert_allclose(dec.log_eta, np.log(n / 2.0) - ref.f64(dec.log_partition), rtol=0,
                               atol=1e-12 * (1 + np.max(np.abs(dec.log_partition))))
    ent = ref.f64(dec.attention_entropy)
    assert np.all(ent >= -1e-12) and np.all(ent <= np.log(n + m) + 1e-12)
    want = ref.attention_parts(*w, demos, context, queries)
    assert ref.rel_err(dec.output, want["w0_out"] + want["dw_out"], np.max(np.abs(values))) <= \
        float64_tol(w, jnp.concatenate([demos, context]), queries)


BAD_INPUTS = [
    ("demos", lambda w, d, c, q: (w, d[:0], c, q), "at least 1 row"),
    ("demos", lambda w, d, c, q: (w, d[:, :2], c, q), "(5, 2)"),
    ("context", lambda w, d, c, q: (w, d, c[:, :1], q), "(3, 1)"),
    ("queries", lambda w, d, c, q: (w, d, c, q[0]), "(4,)"),
    ("queries", lambda w, d, c, q: (w, d, c, q.astype(jnp.float32)), "float32"),
    ("demos", lambda w, d, c, q: (w, d.at[1, 2].set(jnp.nan), c, q), "non-finite"),
    ("context", lambda w, d, c, q: (w, d, c.at[0, 0].set(jnp.inf), q), "non-finite"),
    ("demos", lambda w, d, c, q: (w, d.astype(jnp.int32), c, q), "floating dtype"),
    ("weights.wv", lambda w, d, c, q: (w._replace(wv=w.wv[:, :2]), d, c, q), "(2, 2)"),
    ("weights.wk", lambda w, d, c, q: (w._replace(wk=w.wk[:0]), d, c, q), "(0, 4)"),
    ("weights.wq", lambda w, d, c, q: (w._replace(wq=w.wq[:2]), d, c, q), "(2, 4)"),
    ("weights", lambda w, d, c, q: ("not weights", d, c, q), "AttentionWeights"),
]


@pytest.mark.parametrize("name,corrupt,detail", BAD_INPUTS, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_INPUTS)])
def test_bad_input_raises_value_error_naming_the_argument(key, name, corrupt, detail):
    args = corrupt(*problem(key))
    with pytest.raises(ValueError) as err:
        ik.kd_decomposition(*args)
    assert name in str(err.value) and detail in str(err.value), str(err.value)
    if name != "context":   # softmax_attention(weights, tokens, queries) names its own arguments
        w, d, _, q = args
        with pytest.raises(ValueError, match=name.replace("demos", "tokens").split(".")[0]):
            ik.softmax_attention(w, d, q)


def test_jit_and_vmap_agree_with_eager(key):
    w, demos, context, queries = problem(key)
    eager = ik.kd_decomposition(w, demos, context, queries)
    jitted = jax.jit(ik.kd_decomposition)(w, demos, context, queries)
    chex.assert_trees_all_close(eager, jitted, rtol=1e-13, atol=0)
    batch = jax.random.normal(jax.random.fold_in(key, 1), (3, 5, D))
    batched = jax.vmap(ik.kd_decomposition, in_axes=(None, 0, None, None))(w, batch, context, queries)
    for i in range(3):
        chex.assert_trees_all_close(jax.tree_util.tree_map(lambda a, i=i: a[i], batched),
                                    ik.kd_decomposition(w, batch[i], context, queries), rtol=1e-13, atol=1e-300)
    attn = jax.vmap(ik.softmax_attention, in_axes=(None, None, 0))(w, demos, queries[:, None, :])[:, 0]
    chex.assert_trees_all_close(attn, ik.softmax_attention(w, demos, queries), rtol=1e-13)


def test_repeated_calls_do_not_retrace(key):
    w, demos, context, queries = problem(key, n=7, m=2, q=3)   # shapes used by no other test
    name = "iclkd_jax.attention._kd_decomposition"
    ik.kd_decomposition(w, demos, context, queries)
    before = ik.trace_counts()[name]
    for i in range(3):
        ik.kd_decomposition(w, demos + i, context * i, queries - i)
    assert ik.trace_counts()[name] == before

    @jax.jit
    @chex.assert_max_traces(n=1)
    def outer(demos):
        return ik.softmax_attention(w, demos, queries)

    for i in range(3):
        outer(demos * (i + 1))


@pytest.mark.parametrize("m", [0, 3])
def test_attention_operators_reproduce_attention(key, m):
    """W_0 phi(q) + ΔW phi(q) through the representer operators equals softmax attention (float64, ~1e-12)."""
    w, demos, context, query = kd_problem(key, m=m)
    w0, dw = ik.attention_operators(w, demos, context, query)
    q = (w.wq @ query)[None, :]
    dec = ik.kd_decomposition(w, demos, context, query[None, :])
    assert ref.rel_err(ik.apply_operator(w0, q), dec.w0_out) <= 1e-12
    assert ref.rel_err(ik.apply_operator(w0, q) + ik.apply_operator(dw, q), dec.output) <= 1e-12
    both = ik.add_operators(w0, dw)
    attention = ik.softmax_attention(w, jnp.concatenate([demos, context]), query[None])
    assert ref.rel_err(ik.apply_operator(both, q), attention) <= 1e-12
    if m == 0:
        assert float(ik.hs_norm(dw).value) == 0.0 and float(ik.hs_norm(dw).condition) == 1.0
