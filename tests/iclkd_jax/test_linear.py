"""iclkd_jax.linear against independent NumPy (docs/statements.md#thm-linear, Theorem 3.1, special case)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import iclkd_jax as ik


def _problem(seed=0, d=4, dk=3, dv=2, n=5, m=3, q=2, dtype=np.float64):
    rng = np.random.default_rng(seed)
    weights = ik.AttentionWeights(*(jnp.asarray(rng.normal(size=s).astype(dtype)) for s in [(dk, d), (dk, d), (dv, d)]))
    demos, context, queries = (jnp.asarray(rng.normal(size=(r, d)).astype(dtype)) for r in (n, m, q))
    return weights, demos, context, queries


def _numpy_linear(weights, tokens, queries):
    wq, wk, wv = (np.asarray(w, np.float64) for w in weights)
    tokens, queries = np.asarray(tokens, np.float64), np.asarray(queries, np.float64)
    out = np.zeros((queries.shape[0], wv.shape[0]))
    for a, x in enumerate(queries):
        for t in tokens:
            out[a] += (wv @ t) * float((wk @ t) @ (wq @ x))
    return out


def test_linear_attention_matches_numpy_and_dual_form(x64):
    weights, demos, context, queries = _problem()
    tokens = jnp.concatenate([demos, context])
    out = ik.linear_attention(weights, tokens, queries)
    np.testing.assert_allclose(out, _numpy_linear(weights, tokens, queries), rtol=1e-12, atol=1e-12)
    w0, dw = ik.linear_dual_weights(weights, demos, context)
    wq, wk, wv = (np.asarray(w) for w in weights)
    ref_w0 = sum(np.outer(wv @ x, wk @ x) for x in np.asarray(demos))
    ref_dw = sum(np.outer(wv @ x, wk @ x) for x in np.asarray(context))
    np.testing.assert_allclose(w0, ref_w0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, ref_dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose((np.asarray(w0) + np.asarray(dw)) @ (np.asarray(queries) @ wq.T).T, np.asarray(out).T,
                               rtol=1e-12, atol=1e-12)


def test_dual_weights_without_context_and_float32():
    weights, demos, _, _ = _problem(dtype=np.float32)
    for context in (None, jnp.zeros((0, 4), jnp.float32)):
        w0, dw = ik.linear_dual_weights(weights, demos, context)
        assert w0.dtype == jnp.float32 and dw.shape == w0.shape and not np.any(np.asarray(dw))


@pytest.mark.parametrize("w_init", [None, "random"])
def test_von_oswald_layer_is_one_gd_step(x64, w_init):
    rng = np.random.default_rng(1)
    n, dx, dy, eta = 7, 3, 2, 0.37
    xs, ys, xq = rng.normal(size=(n, dx)), rng.normal(size=(n, dy)), rng.normal(size=(4, dx))
    w = rng.normal(size=(dy, dx)) if w_init else None
    lsa = ik.von_oswald_weights(dx, dy, learning_rate=eta, n_demos=n, w_init=w)
    out = ik.lsa_layer(lsa, ik.lsa_tokens(xs, ys), ik.lsa_query_tokens(xq, y_dim=dy, w_init=w))
    w0 = np.zeros((dy, dx)) if w is None else w
    w1 = w0 - eta / n * sum(np.outer(w0 @ xs[i] - ys[i], xs[i]) for i in range(n))
    np.testing.assert_allclose(ik.lsa_prediction(out, y_dim=dy), xq @ w1.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ik.gd_step_prediction(xs, ys, xq, learning_rate=eta, w_init=w), xq @ w1.T,
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(out)[:, :dx], xq)  # the layer writes only the y-coordinates
    if w is None:  # the closed form of von Oswald et al.: (eta/N) sum_i y_i x_i^T x_q
        np.testing.assert_allclose(ik.lsa_prediction(out, y_dim=dy), eta / n * (xq @ xs.T) @ ys, rtol=1e-12)


def test_gd_step_matches_jax_grad(x64):
    rng = np.random.default_rng(2)
    xs, ys, xq, w = rng.normal(size=(6, 2)), rng.normal(size=(6, 1)), rng.normal(size=(3, 2)), rng.normal(size=(1, 2))
    grad = jax.grad(lambda v: 0.5 * jnp.mean(jnp.sum((xs @ v.T - ys) ** 2, axis=-1)))(jnp.asarray(w))
    np.testing.assert_allclose(ik.gd_step_prediction(xs, ys, xq, learning_rate=0.5, w_init=w),
                               xq @ (w - 0.5 * np.asarray(grad)).T, rtol=1e-12)


def test_bad_inputs_raise_value_errors():
    weights, demos, context, queries = _problem()
    with pytest.raises(ValueError, match="tokens"):
        ik.linear_attention(weights, demos[:, :3], queries)
    with pytest.raises(ValueError, match="queries"):
        ik.linear_attention(weights, demos, queries[0])
    with pytest.raises(ValueError, match="context"):
        ik.linear_dual_weights(weights, demos, context[:, :2])
    with pytest.raises(ValueError, match="learning_rate"):
        ik.von_oswald_weights(2, 1, learning_rate=0.0, n_demos=3)
    with pytest.raises(ValueError, match="n_demos"):
        ik.von_oswald_weights(2, 1, learning_rate=0.1, n_demos=0)
    with pytest.raises(ValueError, match="w_init"):
        ik.von_oswald_weights(2, 1, learning_rate=0.1, n_demos=3, w_init=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="ys"):
        ik.gd_step_prediction(np.zeros((3, 2)), np.zeros((4, 1)), np.zeros((1, 2)), learning_rate=0.1)
    with pytest.raises(ValueError, match="x_query"):
        ik.gd_step_prediction(np.zeros((3, 2)), np.zeros((3, 1)), np.zeros((1, 3)), learning_rate=0.1)
    with pytest.raises(ValueError, match="lsa"):
        ik.lsa_layer(weights, demos, queries)
    with pytest.raises(ValueError, match="non-finite"):
        ik.gd_step_prediction(np.full((3, 2), np.nan), np.zeros((3, 1)), np.zeros((1, 2)), learning_rate=0.1)
