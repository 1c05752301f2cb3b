"""Representer operators, HS norms and the one-step KD of Theorem 3.1(b)."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import iclkd_jax as ik
import np_reference as ref

EPS64 = float(np.finfo(np.float64).eps)
D, DK, DV = 4, 3, 2


def problem(key, n=5, m=3, *, scale=0.5, dtype=jnp.float64):
    kw, kd, kc, kq = jax.random.split(key, 4)
    w = ik.random_attention_weights(kw, token_dim=D, key_dim=DK, value_dim=DV, scale=scale, dtype=dtype)
    return (w, jax.random.normal(kd, (n, D), dtype), jax.random.normal(kc, (m, D), dtype),
            jax.random.normal(kq, (D,), dtype))


def random_operator(key, n=6, *, key_norm=1.0, log_scale=0.0, dtype=jnp.float64):
    kc, kv, kk = jax.random.split(key, 3)
    return ik.RepresenterOperator(jax.random.normal(kc, (n,), dtype), jax.random.normal(kv, (n, DV), dtype),
                                  key_norm * jax.random.normal(kk, (n, DK), dtype) / math.sqrt(DK),
                                  jnp.asarray(log_scale, dtype))


@pytest.mark.parametrize("m", [0, 3])
def test_attention_operators_reproduce_attention(key, m):
    """W_0 phi(q) + ΔW phi(q) through the representer operators equals softmax attention (float64, ~1e-12)."""
    w, demos, context, query = problem(key, m=m)
    w0, dw = ik.attention_operators(w, demos, context, query)
    q = (w.wq @ query)[None, :]
    dec = ik.kd_decomposition(w, demos, context, query[None, :])
    assert ref.rel_err(ik.apply_operator(w0, q), dec.w0_out) <= 1e-12
    assert ref.rel_err(ik.apply_operator(w0, q) + ik.apply_operator(dw, q), dec.output) <= 1e-12
    both = ik.add_operators(w0, dw)
    assert ref.rel_err(ik.apply_operator(both, q), ik.softmax_attention(w, jnp.concatenate([demos, context]), query[None])) <= 1e-12
    if m == 0:
        assert float(ik.hs_norm(dw).value) == 0.0 and float(ik.hs_norm(dw).condition) == 1.0


def test_apply_operator_matches_numpy(key):
    op = random_operator(key, key_norm=2.0, log_scale=-0.7)
    z = jax.random.normal(jax.random.fold_in(key, 1), (4, DK))
    want = ref.apply_representer(*op, z)
    # relative to sum |c_i v_i| exp(k_i.z): a signed sum, so compare with the absolute scale
    scale = np.max(ref.apply_representer(np.abs(op.coef), np.abs(op.values), op.keys, op.log_scale, z))
    assert ref.rel_err(ik.apply_operator(op, z), want, scale) <= 1e-13 * (1 + 4 * DK)


def test_distilled_weights_with_eta_is_w0(key):
    """Theorem 3.1(b): one step from 0 with eta = N/(2D') is W_0 (same log_scale = -log D')."""
    w, demos, _, query = problem(key)
    dec = ik.kd_decomposition(w, demos, None, query[None])
    w0, _ = ik.attention_operators(w, demos, None, query)
    eta = float(5 / (2 * np.exp(float(dec.log_partition[0]))))
    for op in (ik.distilled_weights(w, demos, eta=eta), ik.distilled_weights(w, demos, log_eta=dec.log_eta[0])):
        np.testing.assert_allclose(op.log_scale, w0.log_scale, rtol=0, atol=4 * EPS64 * (1 + abs(float(w0.log_scale))))
        assert ref.rel_err(ik.apply_operator(op, (w.wq @ query)[None]), dec.w0_out) <= 1e-12


def test_distilled_weights_log_eta_at_logits_1e3():
    """Logits ~ ±1e3: eta = N/(2D') = e^{-1000} underflows, log_eta does not; the step still reproduces W_0."""
    w = ik.AttentionWeights(jnp.eye(2), jnp.eye(2), jnp.eye(2))
    demos = jnp.array([[31.0, 0.5], [0.4, 31.5], [-31.0, 2.0], [30.0, -3.0]])
    queries = jnp.array([[32.0, 0.0], [-32.0, 1.0]])
    dec = ik.kd_decomposition(w, demos, None, queries)
    want = ref.attention_parts(*w, demos, None, queries)
    tol = 8 * 3 * EPS64 * 1100           # relative error of exp(l - max) ~ eps |l|, |l| <= 1100
    for i in range(2):
        op = ik.distilled_weights(w, demos, log_eta=dec.log_eta[i])
        got = ik.apply_operator(op, queries[i:i + 1] @ w.wq.T)
        assert np.all(np.isfinite(np.asarray(got)))
        assert ref.rel_err(got, want["w0_out"][i:i + 1], 32.0) <= tol
        hs = ik.hs_norm(op)
        terms, log_s = ref.hs_norm_terms(*op)
        assert np.isfinite(float(hs.log_value)) and abs(float(hs.log_value)) > 700
        np.testing.assert_allclose(float(hs.log_value), np.log(terms.sum()) + log_s, rtol=tol)


@pytest.mark.parametrize("key_norm", [0.5, 2.0, 30.0])
def test_hs_norm_matches_numpy_and_is_consistent(key, key_norm):
    op = random_operator(key, key_norm=key_norm, log_scale=-3.0)
    hs = ik.hs_norm(op)
    terms, log_s = ref.hs_norm_terms(*op)
    raw = terms.sum()
    condition = np.abs(terms).sum() / abs(raw)
    assert float(hs.value) >= 0 and bool(hs.clipped) == (raw < 0)
    np.testing.assert_allclose(float(hs.condition), condition, rtol=1e-10)
    # relative error of a sum of n^2 terms ~ n^2 eps * condition, plus exp's eps |k_i.k_j|
    tol = (op.coef.shape[0] ** 2 + 4 * DK * (1 + key_norm**2)) * EPS64 * condition
    np.testing.assert_allclose(float(hs.log_value), np.log(raw) + log_s, rtol=0, atol=tol)
    if key_norm < 10:
        np.testing.assert_allclose(float(hs.value), raw * np.exp(log_s), rtol=tol)


def test_hs_norm_never_negative_under_cancellation():
    """W = v ⊗ phi(k) - v ⊗ phi(k') with k' -> k: the raw double sum cancels; value >= 0, condition reported."""
    k = jnp.array([[0.3, -0.2, 0.5]])
    for delta in (1e-9, 1e-12, 0.0):
        op = ik.RepresenterOperator(jnp.array([1.0, -1.0]), jnp.array([[1.0, 2.0], [1.0, 2.0]]),
                                    jnp.concatenate([k, k + delta]), jnp.asarray(0.0))
        hs = ik.hs_norm(op)
        assert float(hs.value) >= 0.0
        assert float(hs.condition) > 1e6 or bool(hs.clipped) or float(hs.value) == 0.0
        if bool(hs.clipped):
            assert float(hs.value) == 0.0 and float(hs.log_value) == -np.inf


@given(seed=st.integers(0, 2**31 - 1), order=st.sampled_from([6, 8]))
def test_hs_norm_kernel_form_vs_explicit_taylor(seed, order):
    """||W||_HS^2 in kernel form vs the Frobenius norm of the explicit Taylor matrix (error <= Taylor remainder)."""
    op = random_operator(jax.random.key(seed), n=4, key_norm=0.8)
    fm = ik.taylor_features(order, key_dim=DK)
    matrix = ik.to_matrix(op, fm)
    np.testing.assert_allclose(matrix, (ref.f64(op.coef)[:, None] * ref.f64(op.values)).T
                               @ ref.taylor_features(op.keys, order), rtol=1e-12, atol=1e-14)
    explicit = float(jnp.sum(matrix**2))
    exact = float(ik.hs_norm(op).value)
    s = ref.f64(op.keys) @ ref.f64(op.keys).T
    weights = np.abs(np.outer(op.coef, op.coef) * (ref.f64(op.values) @ ref.f64(op.values).T))
    remainder = float(np.sum(weights * ref.taylor_remainder(s, order)))
    rounding = 64 * EPS64 * float(np.sum(weights * np.exp(np.abs(s))))
    assert abs(explicit - exact) <= remainder + rounding


def test_kd_loss_gradient_at_zero_and_one_step(key):
    """grad L(0) = -(2/N) sum_i v_i phi(k_i)^T (jax.grad, any explicit map), and W_1 phi(q) ≈ w0_out (Taylor remainder)."""
    w, demos, _, query = problem(key)
    n = demos.shape[0]
    order = 8
    fm = ik.taylor_features(order, key_dim=DK)
    zero = jnp.zeros((DV, fm.num_features))
    grad = jax.grad(ik.kd_loss)(zero, fm, w, demos)
    values, keys = ref.f64(demos @ w.wv.T), ref.f64(demos @ w.wk.T)
    want = -(2.0 / n) * values.T @ ref.taylor_features(keys, order)
    assert ref.rel_err(grad, want) <= 1e-13
    prf = ik.positive_random_features(jax.random.fold_in(key, 7), 64, key_dim=DK)
    grad_rf = jax.grad(ik.kd_loss)(jnp.zeros((DV, 64)), prf, w, demos)
    assert ref.rel_err(grad_rf, -(2.0 / n) * values.T @ ref.f64(prf(demos @ w.wk.T))) <= 1e-13

    dec = ik.kd_decomposition(w, demos, None, query[None])
    eta = np.exp(float(dec.log_eta[0]))
    w1 = zero - eta * grad
    np.testing.assert_allclose(w1, ik.distilled_weights(w, demos, eta=eta, feature_map=fm), rtol=1e-13, atol=1e-16)
    q = ref.f64(w.wq @ query)
    out = ref.taylor_features(q[None], order) @ ref.f64(w1).T
    s = keys @ q
    bound = np.sum(np.abs(values) * ref.taylor_remainder(s, order)[:, None], axis=0) / np.exp(float(dec.log_partition[0]))
    err = np.abs(out[0] - ref.f64(dec.w0_out[0]))
    assert np.all(err <= bound + 1e-14) and np.max(bound) < 1e-3
    # the loss itself against NumPy
    loss = float(ik.kd_loss(w1, fm, w, demos))
    resid = values - ref.taylor_features(keys, order) @ ref.f64(w1).T
    np.testing.assert_allclose(loss, np.mean(np.sum(resid**2, -1)), rtol=1e-12)


def test_linear_special_case_and_student(key):
    """phi = identity: to_matrix is sum_i c_i v_i k_i^T (the dual form); student agrees with both forms."""
    w, demos, _, _ = problem(key)
    op = ik.distilled_weights(w, demos, eta=0.3)
    matrix = ik.to_matrix(op, ik.identity_features(key_dim=DK))
    want = (2 * 0.3 / 5) * ref.f64(demos @ w.wv.T).T @ ref.f64(demos @ w.wk.T)
    assert ref.rel_err(matrix, want) <= 1e-13
    tokens = demos[:3]
    np.testing.assert_allclose(ik.student(op, w, tokens), ik.apply_operator(op, tokens @ w.wk.T), rtol=1e-14)
    fm = ik.taylor_features(3, key_dim=DK)
    mat = ik.to_matrix(op, fm)
    np.testing.assert_allclose(ik.student(mat, w, tokens, fm), fm(tokens @ w.wk.T) @ mat.T, rtol=1e-14)
    np.testing.assert_allclose(ik.teacher(w, tokens), tokens @ w.wv.T, rtol=1e-15)


def test_float32_dtype_preserved(key):
    w, demos, context, query = problem(key, dtype=jnp.float32)
    w0, dw = ik.attention_operators(w, demos, context, query)
    op = ik.distilled_weights(w, demos, eta=0.5)
    fm = ik.taylor_features(2, key_dim=DK)
    outs = [ik.apply_operator(w0, (w.wq @ query)[None]), *ik.hs_norm(op)[:3], op.log_scale, ik.to_matrix(op, fm),
            ik.kd_loss(ik.to_matrix(op, fm), fm, w, demos), ik.add_operators(w0, dw).coef]
    for a in outs:
        assert a.dtype == jnp.float32
    # float32 vs float64 for W_0 phi(q): the attention float32 bound applies
    w64, demos64, q64 = (jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), t) for t in (w, demos, query))
    w0_64, _ = ik.attention_operators(w64, demos64, None, q64)
    w0_32, _ = ik.attention_operators(w, demos, None, query)
    err = np.max(np.abs(ref.f64(ik.apply_operator(w0_32, (w.wq @ query)[None]))
                        - ref.f64(ik.apply_operator(w0_64, (w64.wq @ q64)[None]))))
    assert err <= ref.float32_attention_tol(*w, demos, query[None])


def test_bad_inputs_name_the_argument(key):
    w, demos, _, query = problem(key)
    op = ik.distilled_weights(w, demos, eta=1.0)
    fm = ik.taylor_features(2, key_dim=DK)
    cases = [
        (lambda: ik.apply_operator(op, jnp.ones((2, DK + 1))), "z", "(2, 4)"),
        (lambda: ik.apply_operator(op, jnp.ones((2, DK), jnp.float32)), "z", "float32"),
        (lambda: ik.apply_operator(op._replace(coef=op.coef[:2]), jnp.ones((1, DK))), "operator", "(2,)"),
        (lambda: ik.apply_operator(op._replace(log_scale=jnp.asarray(jnp.nan)), jnp.ones((1, DK))), "log_scale", "non-finite"),
        (lambda: ik.hs_norm(op._replace(values=op.values.at[0, 0].set(jnp.inf))), "operator.values", "non-finite"),
        (lambda: ik.hs_norm("op"), "operator", "RepresenterOperator"),
        (lambda: ik.distilled_weights(w, demos, eta=-1.0), "eta", "-1.0"),
        (lambda: ik.distilled_weights(w, demos, eta=1.0, log_eta=0.0), "eta", "exactly one"),
        (lambda: ik.distilled_weights(w, demos, log_eta=jnp.nan), "log_eta", "non-finite"),
        (lambda: ik.distilled_weights(w, demos[:0], eta=1.0), "tokens", "(0, 4)"),
        (lambda: ik.kd_loss(jnp.zeros((DV, 5)), fm, w, demos), "w", "(2, 5)"),
        (lambda: ik.kd_loss(jnp.zeros((DV, fm.num_features)), ik.taylor_features(2, key_dim=2), w, demos), "feature_map", "key_dim"),
        (lambda: ik.to_matrix(op, ik.taylor_features(2, key_dim=DK + 1)), "feature_map", "key_dim"),
        (lambda: ik.attention_operators(w, demos, None, query[None]), "query", "(1, 4)"),
        (lambda: ik.student(jnp.zeros((DV, 3)), w, demos, fm), "w", "(2, 3)"),
    ]
    for call, name, detail in cases:
        with pytest.raises(ValueError) as err:
            call()
        assert name in str(err.value) and detail in str(err.value), str(err.value)


def test_jit_vmap_and_no_retrace(key):
    op = random_operator(key, n=9)
    z = jax.random.normal(jax.random.fold_in(key, 2), (3, 5, DK))
    eager = ik.apply_operator(op, z[0])
    chex.assert_trees_all_close(jax.jit(ik.apply_operator)(op, z[0]), eager, rtol=1e-14)
    batched = jax.vmap(ik.apply_operator, in_axes=(None, 0))(op, z)
    chex.assert_trees_all_close(batched[1], ik.apply_operator(op, z[1]), rtol=1e-14)
    chex.assert_trees_all_close(jax.jit(ik.hs_norm)(op), ik.hs_norm(op), rtol=1e-14)
    before = ik.trace_counts()["iclkd_jax.operators._hs_norm"]
    for i in range(3):
        ik.hs_norm(op._replace(coef=op.coef * (i + 2), log_scale=op.log_scale + i))
    assert ik.trace_counts()["iclkd_jax.operators._hs_norm"] == before
