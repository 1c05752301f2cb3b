"""Representer operators and their algebra: application, HS norms, explicit matrices, sums."""

import math

import chex
import jax
import jax.numpy as jnp
import np_reference as ref
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kd_problems import DK, DV, problem

import iclkd_jax as ik

EPS64 = float(np.finfo(np.float64).eps)


def random_operator(key, n=6, *, key_norm=1.0, log_scale=0.0, dtype=jnp.float64):
    kc, kv, kk = jax.random.split(key, 3)
    return ik.RepresenterOperator(jax.random.normal(kc, (n,), dtype), jax.random.normal(kv, (n, DV), dtype),
                                  key_norm * jax.random.normal(kk, (n, DK), dtype) / math.sqrt(DK),
                                  jnp.asarray(log_scale, dtype))


def test_apply_operator_matches_numpy(key):
    op = random_operator(key, key_norm=2.0, log_scale=-0.7)
    z = jax.random.normal(jax.random.fold_in(key, 1), (4, DK))
    want = ref.apply_representer(*op, z)
    # relative to sum |c_i v_i| exp(k_i.z): a signed sum, so compare with the absolute scale
    scale = np.max(ref.apply_representer(np.abs(op.coef), np.abs(op.values), op.keys, op.log_scale, z))
    assert ref.rel_err(ik.apply_operator(op, z), want, scale) <= 1e-13 * (1 + 4 * DK)


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


def test_float32_dtype_preserved(key):
    w, demos, context, query = problem(key, dtype=jnp.float32)
    w0, dw = ik.attention_operators(w, demos, context, query)
    op = ik.distilled_weights(w, demos, eta=0.5)
    fm = ik.taylor_features(2, key_dim=DK)
    outs = [ik.apply_operator(w0, (w.wq @ query)[None]), *ik.hs_norm(op)[:3], op.log_scale, ik.to_matrix(op, fm),
            ik.kd_loss(ik.to_matrix(op, fm), w, demos, feature_map=fm), ik.add_operators(w0, dw).coef]
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
    cases = [
        (lambda: ik.apply_operator(op, jnp.ones((2, DK + 1))), "z", "(2, 4)"),
        (lambda: ik.apply_operator(op, jnp.ones((2, DK), jnp.float32)), "z", "float32"),
        (lambda: ik.apply_operator(op._replace(coef=op.coef[:2]), jnp.ones((1, DK))), "operator", "(2,)"),
        (lambda: ik.apply_operator(op._replace(log_scale=jnp.asarray(jnp.nan)), jnp.ones((1, DK))), "log_scale", "non-finite"),
        (lambda: ik.hs_norm(op._replace(values=op.values.at[0, 0].set(jnp.inf))), "operator.values", "non-finite"),
        (lambda: ik.hs_norm("op"), "operator", "RepresenterOperator"),
        (lambda: ik.to_matrix(op, ik.taylor_features(2, key_dim=DK + 1)), "feature_map", "key_dim"),
        (lambda: ik.attention_operators(w, demos, None, query[None]), "query", "(1, 4)"),
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
