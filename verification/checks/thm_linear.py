"""thm-linear: linear attention is exactly one gradient step (THEOREMS.md, Theorem 3.1, special case).

Statements:

1. Dual form (Dai et al., 2022). With ``phi`` = identity (no softmax, no
   normalisation): ``sum_j v_j (k_j . q) = (W_0 + ΔW) q`` with ``W_0 = sum_i v_i k_i^T``
   and ``ΔW = sum_j v'_j k'_j^T``; and ``W_0 = 0 − eta grad L_D(0)`` with ``eta = N/2``
   (Theorem 3.1(b) with ``phi`` = identity; the gradient by ``jax.grad`` of ``kd_loss``).
2. von Oswald et al. (2023). One LSA layer with ``W^K = W^Q = [[I, 0], [0, 0]]``,
   ``W^V = [[0, 0], [W_init, −I]]``, ``P = (eta/N) I`` maps the query token
   ``(x_q, −W_init x_q)`` to ``(x_q, −W_1 x_q)`` with ``W_1 = W_init − eta grad L(W_init)``,
   ``L(W) = 1/(2N) sum_i ||W x_i − y_i||^2`` (derivation in :mod:`iclkd_jax.linear`).
   ``W_init`` is random (never 0): from 0 the query's y-part is 0 and a key that
   wrongly includes y could not be told apart.

References are float64 NumPy loops (independent of the library's matrix forms).

Tolerance: every quantity is a sum of ``n`` products of length ``d``; its round-off
is at most ``(n + d) eps`` times the sum of absolute terms ``S = sum_j |v_j| |k_j . q|``
(resp. ``sum_i |r_i| |x_i . x_q|``), so errors are measured relative to ``S`` and
judged against ``8 (n + d) eps``: no conditioning enters, because it is already in ``S``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

import iclkd_jax as ik
from verification.registry import Check, RunContext, register
from verification.search import explore
from verification.strategies import SHAPES, AttentionCase, standard_normal_pool
from verification.tolerances import eps

#: shapes with a non-empty query context (the dropped-context mutant must be visible in every case)
_DUAL_SHAPES = tuple(s for s in SHAPES if s[4] > 0)
#: (x_dim, y_dim, N): N > 1 everywhere, so a missing 1/N changes the result
_REGRESSION_SHAPES = ((1, 1, 3), (3, 2, 5), (4, 2, 16))


@dataclasses.dataclass(frozen=True)
class LinearCase:
    attention: AttentionCase
    regression_shape: tuple[int, int, int]
    learning_rate: float
    n_queries: int = 3

    def regression(self):
        dx, dy, n = self.regression_shape
        sizes = [n * dx, n * dy, self.n_queries * dx, dy * dx]
        pool = standard_normal_pool(self.attention.seed + 1, sum(sizes))
        xs, ys, xq, w = np.split(pool, np.cumsum(sizes)[:-1])
        dtype = np.dtype(self.attention.dtype)
        return tuple(jax.device_put(a.reshape(s).astype(dtype))
                     for a, s in ((xs, (n, dx)), (ys, (n, dy)), (xq, (self.n_queries, dx)), (w, (dy, dx))))

    def describe(self) -> dict:
        return {**self.attention.describe(), "regression_shape": self.regression_shape,
                "learning_rate": self.learning_rate}


def linear_cases() -> st.SearchStrategy[LinearCase]:
    attention = st.builds(lambda seed, shape, scale, dtype: AttentionCase(seed, *shape, scale=scale, dtype=dtype),
                          st.integers(0, 2**31 - 1), st.sampled_from(_DUAL_SHAPES), st.floats(0.1, 4.0),
                          st.sampled_from(("float64", "float32")))
    return st.builds(LinearCase, attention, st.sampled_from(_REGRESSION_SHAPES), st.floats(0.01, 2.0))


@jax.jit
def _kd_loss_grad(weights, demos):
    """``grad L_D(0)`` of the explicit KD loss with ``phi`` = identity, by ``jax.grad`` (one compile per shape)."""
    fm = ik.identity_features(key_dim=weights.wk.shape[0])
    zero = jnp.zeros((weights.wv.shape[0], weights.wk.shape[0]), demos.dtype)
    return jax.grad(lambda w: ik.kd_loss(w, weights, demos, feature_map=fm))(zero)


def dual_under_test(weights, demos, context, queries, mutant):
    """Library: attention output, ``(W_0 + ΔW) q``, and ``W_0`` as the step ``−(N/2) grad L_D(0)``."""
    tokens = jax.device_put(np.concatenate([np.asarray(demos), np.asarray(context)]))
    attention = np.asarray(ik.linear_attention(weights, tokens, queries), np.float64)
    w0, dw = (np.asarray(a, np.float64) for a in ik.linear_dual_weights(weights, demos, context))
    if mutant == "drop-context-term":
        dw = np.zeros_like(dw)
    q = np.asarray(queries, np.float64) @ np.asarray(weights.wq, np.float64).T
    dual = q @ (w0 + dw).T
    step = -(demos.shape[0] / 2) * np.asarray(_kd_loss_grad(weights, demos), np.float64)
    return attention, dual, w0, step


def gd_under_test(xs, ys, xq, w_init, learning_rate, mutant):
    """Library: the von Oswald LSA layer's prediction and ``gd_step_prediction``."""
    dx, dy, n = xs.shape[1], ys.shape[1], xs.shape[0]
    eta = 2 * learning_rate if mutant == "step-size-times-2" else learning_rate
    lsa = ik.von_oswald_weights(dx, dy, learning_rate=eta, n_demos=n, w_init=w_init)
    if mutant == "missing-1/N":
        lsa = lsa._replace(projection=lsa.projection * n)
    elif mutant == "y-in-keys":
        eye = jax.device_put(np.eye(dx + dy).astype(xs.dtype))
        lsa = lsa._replace(wq=eye, wk=eye)
    out = ik.lsa_layer(lsa, ik.lsa_tokens(xs, ys), ik.lsa_query_tokens(xq, y_dim=dy, w_init=w_init))
    prediction = np.asarray(ik.lsa_prediction(out, y_dim=dy), np.float64)
    out = np.asarray(out)
    gd = np.asarray(ik.gd_step_prediction(xs, ys, xq, learning_rate=learning_rate, w_init=w_init), np.float64)
    return prediction, gd, out[:, :dx].astype(np.float64)


def _numpy_dual(weights, demos, context, queries):
    """Float64 loops: attention output, W_0, and the scale ``S = max_q sum_j |v_j|_inf |k_j . q|``."""
    wq, wk, wv = (np.asarray(w, np.float64) for w in weights)
    tokens = np.concatenate([np.asarray(demos, np.float64), np.asarray(context, np.float64)])
    queries = np.asarray(queries, np.float64)
    out = np.zeros((queries.shape[0], wv.shape[0]))
    scale = 0.0
    for a, x in enumerate(queries):
        terms = [(wv @ t) * float((wk @ t) @ (wq @ x)) for t in tokens]
        out[a] = np.sum(terms, axis=0)
        scale = max(scale, float(np.sum([np.abs(t).max() for t in terms])))
    w0 = np.zeros((wv.shape[0], wk.shape[0]))
    for t in np.asarray(demos, np.float64):
        w0 += np.outer(wv @ t, wk @ t)
    w0_scale = sum(np.abs(np.outer(wv @ t, wk @ t)).max() for t in np.asarray(demos, np.float64))
    return out, w0, max(scale, 1e-300), max(w0_scale, 1e-300)


def _numpy_gd(xs, ys, xq, w_init, learning_rate):
    xs, ys, xq, w = (np.asarray(a, np.float64) for a in (xs, ys, xq, w_init))
    n = xs.shape[0]
    residuals = [w @ xs[i] - ys[i] for i in range(n)]
    w1 = w - learning_rate / n * sum(np.outer(r, x) for r, x in zip(residuals, xs))
    scale = max(np.abs(w @ xq.T).max(),
                learning_rate / n * max(sum(np.abs(r).max() * abs(x @ q) for r, x in zip(residuals, xs)) for q in xq))
    return xq @ w1.T, max(float(scale), 1e-300)


@register
class TheoremLinear(Check):
    id = "thm-linear"
    kind = "theorem"
    title = "linear attention = (W_0 + ΔW) q exactly (Dai et al.); one LSA layer = one GD step (von Oswald et al.)"
    mutants = {
        "step-size-times-2": "the LSA layer built with twice the GD step size",
        "missing-1/N": "the LSA projection P = eta I instead of (eta/N) I",
        "y-in-keys": "W^K = W^Q = I: the keys and queries also see the targets y",
        "drop-context-term": "ΔW (the query context's outer products) dropped from the dual form",
    }

    def run(self, ctx: RunContext):
        def measure(case: LinearCase):
            weights, demos, context, queries = case.attention.build()
            dtype = case.attention.dtype
            attention, dual, w0, step = dual_under_test(weights, demos, context, queries, ctx.mutant)
            ref_out, ref_w0, scale, w0_scale = _numpy_dual(weights, demos, context, queries)
            n, d = demos.shape[0] + context.shape[0], max(demos.shape[1], weights.wk.shape[0])
            dual_error = max(np.abs(attention - ref_out).max(), np.abs(dual - ref_out).max()) / scale
            w0_error = max(np.abs(w0 - ref_w0).max(), np.abs(step - ref_w0).max()) / w0_scale
            dual_tol = 8 * (n + d) * eps(dtype)
            xs, ys, xq, w_init = case.regression()
            prediction, gd, x_part = gd_under_test(xs, ys, xq, w_init, case.learning_rate, ctx.mutant)
            ref_gd, gd_scale = _numpy_gd(xs, ys, xq, w_init, case.learning_rate)
            gd_error = max(np.abs(prediction - ref_gd).max(), np.abs(gd - ref_gd).max()) / gd_scale
            x_changed = float(np.abs(x_part - np.asarray(xq, np.float64)).max())
            gd_tol = 8 * (xs.shape[0] + xs.shape[1] + ys.shape[1]) * eps(dtype)
            ratio = max(dual_error / dual_tol, w0_error / dual_tol, gd_error / gd_tol, np.inf if x_changed else 0.0)
            return {"dtype": dtype, "dual_error": float(dual_error), "w0_error": float(w0_error),
                    "gd_error": float(gd_error), "x_changed": x_changed, "ratio": float(ratio)}

        exploration = explore(linear_cases(), measure, max_examples=ctx.profile.examples * 2,
                              seed_value=ctx.hypothesis_seed, fails=lambda m: m["ratio"] > 1.0, shrink=ctx.shrink)
        ms = exploration.measurements
        worst = max(ms, key=lambda m: m["ratio"])

        def worst_of(field, dtype):
            return max((m[field] for m in ms if m["dtype"] == dtype), default=None)

        figures = {f"max_{f}_{dt}": worst_of(f, dt) for f in ("dual_error", "w0_error", "gd_error")
                   for dt in ("float64", "float32")}
        counterexample = None
        if exploration.counterexample:
            case, m = exploration.counterexample
            counterexample = {"case": case.describe(), **m}
        return self.result(
            ctx, status="violated" if counterexample else "holds", cases=exploration.cases, worst=worst["ratio"],
            worst_label="max error/tolerance", tolerance=1.0,
            tolerance_reason="errors relative to the sum of absolute terms, within 8 (n + d) eps per dtype "
                             "(round-off of n products of length d)",
            figures=figures, counterexample=counterexample,
            summary=(f"dual form error {figures['max_dual_error_float64']:.1e} (f64) / "
                     f"{figures['max_dual_error_float32'] or 0:.1e} (f32); von Oswald LSA = GD step to "
                     f"{figures['max_gd_error_float64']:.1e} (f64) / {figures['max_gd_error_float32'] or 0:.1e} (f32), "
                     f"relative to the sum of absolute terms"))
