"""Teacher, student, KD loss and risk, one-step distilled weights and their difference (Theorems 3.1(b), 4.1, 4.2)."""

import jax
import jax.numpy as jnp
import np_reference as ref
import numpy as np
import pytest
from kd_problems import DK, DV, problem

import iclkd_jax as ik

EPS64 = float(np.finfo(np.float64).eps)


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



def test_kd_loss_gradient_at_zero_and_one_step(key):
    """grad L(0) = -(2/N) sum_i v_i phi(k_i)^T (jax.grad, any explicit map), and W_1 phi(q) ≈ w0_out (Taylor remainder)."""
    w, demos, _, query = problem(key)
    n = demos.shape[0]
    order = 8
    fm = ik.taylor_features(order, key_dim=DK)
    zero = jnp.zeros((DV, fm.num_features))
    grad = jax.grad(ik.kd_loss)(zero, w, demos, feature_map=fm)
    values, keys = ref.f64(demos @ w.wv.T), ref.f64(demos @ w.wk.T)
    want = -(2.0 / n) * values.T @ ref.taylor_features(keys, order)
    assert ref.rel_err(grad, want) <= 1e-13
    prf = ik.positive_random_features(jax.random.fold_in(key, 7), 64, key_dim=DK)
    grad_rf = jax.grad(ik.kd_loss)(jnp.zeros((DV, 64)), w, demos, feature_map=prf)
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
    loss = float(ik.kd_loss(w1, w, demos, feature_map=fm))
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
    np.testing.assert_allclose(ik.student(mat, w, tokens, feature_map=fm), fm(tokens @ w.wk.T) @ mat.T, rtol=1e-14)
    np.testing.assert_allclose(ik.teacher(w, tokens), tokens @ w.wv.T, rtol=1e-15)




def test_distilled_weight_difference_matches_numpy(key):
    """ΔW = W̄(𝒬) - W̄(𝒟): coefficients +1/n, -1/m, rows [prompt; target], log(2 eta); its HS norm from NumPy."""
    w, target, prompt, _ = problem(key, n=5, m=3)
    eta = 0.37
    dw = ik.distilled_weight_difference(w, target, prompt, eta=eta)
    np.testing.assert_array_equal(dw.coef, np.r_[np.full(3, 1 / 3), np.full(5, -1 / 5)])
    tokens = ref.f64(jnp.concatenate([prompt, target]))
    np.testing.assert_allclose(dw.values, tokens @ ref.f64(w.wv).T, rtol=1e-14)
    np.testing.assert_allclose(dw.keys, tokens @ ref.f64(w.wk).T, rtol=1e-14)
    np.testing.assert_allclose(float(dw.log_scale), np.log(2 * eta), rtol=1e-15)
    # ||ΔW||^2 = (2 eta)^2 sum_ij c_i c_j <v_i, v_j> exp(k_i . k_j), in NumPy float64
    terms, log_scale = ref.hs_norm_terms(dw.coef, tokens @ ref.f64(w.wv).T, tokens @ ref.f64(w.wk).T, np.log(2 * eta))
    want = float(np.sum(terms)) * np.exp(log_scale)
    norm = ik.hs_norm(dw)
    assert abs(float(norm.value) - want) <= 64 * EPS64 * float(norm.condition) * want


def test_distilled_weight_difference_is_the_difference_of_one_step_weights(key):
    """As operators: ΔW phi(z) = W̄(𝒬) phi(z) - W̄(𝒟) phi(z) (Theorem 3.1(b) with the same eta)."""
    w, target, prompt, query = problem(key, n=4, m=6)
    dw = ik.distilled_weight_difference(w, target, prompt, log_eta=-0.4)
    z = jnp.stack([w.wk @ query, w.wk @ target[0], 2.0 * w.wk @ prompt[1]])
    q_op, d_op = ik.distilled_weights(w, prompt, log_eta=-0.4), ik.distilled_weights(w, target, log_eta=-0.4)
    scale = np.max(ref.apply_representer(np.abs(dw.coef), np.abs(dw.values), dw.keys, dw.log_scale, z))
    want = ref.apply_representer(*q_op, z) - ref.apply_representer(*d_op, z)
    assert ref.rel_err(ik.apply_operator(dw, z), want, scale) <= 1e-13


def test_distilled_weight_difference_isometric_value_map_equals_bound(key):
    """Theorem 4.1 with W^V = I (isometric): ||ΔW||_HS = 2 eta MMD_k exactly, k the product kernel (NumPy Gram)."""
    w, target, prompt, _ = problem(key, n=5, m=4)
    w = w._replace(wv=jnp.eye(w.wk.shape[1]))
    eta = 0.8
    dw_sq = float(ik.hs_norm(ik.distilled_weight_difference(w, target, prompt, eta=eta)).value)
    gram = lambda a, b: ref.gram("product", a, b, wk=w.wk)  # noqa: E731
    mmd2, scale = ref.mmd2(gram(prompt, prompt), gram(target, target), gram(prompt, target), "biased")
    assert abs(dw_sq - (2 * eta) ** 2 * mmd2) <= 64 * EPS64 * (2 * eta) ** 2 * scale


def test_distilled_weight_difference_extreme_log_eta_and_float32(key):
    """log_eta = -1000 (eta underflows) keeps a finite log_scale; float32 in, float32 out."""
    w, target, prompt, _ = problem(key)
    dw = ik.distilled_weight_difference(w, target, prompt, log_eta=-1000.0)
    assert float(dw.log_scale) == pytest.approx(np.log(2.0) - 1000.0, rel=1e-15)
    w32, t32, p32, _ = problem(key, dtype=jnp.float32)
    dw32 = ik.distilled_weight_difference(w32, t32, p32, eta=0.5)
    assert all(leaf.dtype == jnp.float32 for leaf in dw32)


def test_kd_risk_matches_numpy_and_kd_loss(key):
    """L(W) = mean ||W^V x - W phi(W^K x)||^2 of an exact operator, against NumPy; kd_risk is kd_loss on the sample."""
    w, demos, context, _ = problem(key, n=6, m=4)
    op = ik.distilled_weights(w, demos, eta=0.6)
    reference = jnp.concatenate([demos, context])
    pred = ref.apply_representer(*op, ref.f64(reference) @ ref.f64(w.wk).T)
    residual = ref.f64(reference) @ ref.f64(w.wv).T - pred
    want = float(np.mean(np.sum(residual**2, axis=-1)))
    assert float(ik.kd_risk(op, w, reference)) == pytest.approx(want, rel=1e-13)
    assert float(ik.kd_loss(op, w, reference)) == float(ik.kd_risk(op, w, reference))
    # the explicit-map form of the same operator gives the same risk up to the truncation error (order 12)
    fm = ik.taylor_features(12, key_dim=DK)
    explicit = float(ik.kd_risk(ik.to_matrix(op, fm), w, reference, feature_map=fm))
    assert explicit == pytest.approx(want, rel=1e-6)


def test_one_argument_order_and_bad_inputs(key):
    """student, kd_loss and kd_risk all take (w, weights, tokens, *, feature_map); misuse names the argument."""
    w, demos, context, _ = problem(key)
    op = ik.distilled_weights(w, demos, eta=1.0)
    fm = ik.taylor_features(2, key_dim=DK)
    cases = [
        (lambda: ik.kd_loss(jnp.zeros((DV, 5)), w, demos, feature_map=fm), "w", "(2, 5)"),
        (lambda: ik.kd_loss(jnp.zeros((DV, fm.num_features)), w, demos, feature_map=ik.taylor_features(2, key_dim=2)),
         "feature_map", "key_dim"),
        (lambda: ik.student(jnp.zeros((DV, 3)), w, demos, feature_map=fm), "w", "(2, 3)"),
        (lambda: ik.student(jnp.zeros((DV, 3)), w, demos), "feature_map", "matrix w"),
        (lambda: ik.kd_risk(op, w, demos, feature_map=fm), "feature_map", "RepresenterOperator"),
        (lambda: ik.kd_risk(op, w, demos[:, :2]), "tokens", "(5, 2)"),
        (lambda: ik.distilled_weight_difference(w, demos, context.astype(jnp.float32), eta=1.0), "prompt", "float32"),
        (lambda: ik.distilled_weight_difference(w, demos, context[:, :3], eta=1.0), "prompt", "(3, 3)"),
        (lambda: ik.distilled_weight_difference(w, demos, context, eta=1.0, log_eta=0.0), "eta", "exactly one"),
        (lambda: ik.distilled_weight_difference(w, demos[:0], context, eta=1.0), "target", "(0, 4)"),
        (lambda: ik.distilled_weights(w, demos, eta=-1.0), "eta", "-1.0"),
        (lambda: ik.distilled_weights(w, demos, eta=1.0, log_eta=0.0), "eta", "exactly one"),
        (lambda: ik.distilled_weights(w, demos, log_eta=jnp.nan), "log_eta", "non-finite"),
        (lambda: ik.distilled_weights(w, demos[:0], eta=1.0), "tokens", "(0, 4)"),
    ]
    for call, name, detail in cases:
        with pytest.raises(ValueError) as err:
            call()
        assert name in str(err.value) and detail in str(err.value), str(err.value)
