"""thm-linear: linear attention is exactly one gradient step (docs/statements.md#thm-linear, Theorem 3.1, special case).

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

Measured, two-sided against :mod:`verification.oracles.reference` (float64 NumPy: the dual form, the
gradient, the GD step and the LSA layer built block by block from the construction): the library's
``linear_attention``, ``(W_0 + ΔW) q`` from ``linear_dual_weights``, ``W_0`` and ``−(N/2) grad L_D(0)``;
``lsa_layer`` (with ``von_oswald_weights``, ``lsa_tokens``, ``lsa_query_tokens``, ``lsa_prediction``),
``gd_step_prediction``, and the x-part of the updated query (unchanged exactly).
Vectorised: ``CHUNK`` cases per compiled call, 3 (attention shape, regression shape) pairs x 2 dtypes,
weights of scale log-uniform in [0.1, 4], learning rates uniform in [0.01, 2], every draw from
``RunContext.key``; then Hypothesis cases through the same programs, shrunk on failure.

Tolerance: every quantity is a sum of ``n`` products of length ``d``; its round-off is at most
``(n + 3d + d_k + 2) u <= 8 (n + d) eps`` times the sum of absolute terms ``S`` (``S = sum_j
max(|W^V||x_j|) (|W^K||x_j|).(|W^Q||x'|)`` entrywise absolute, resp. ``max(|W_init||x_q|, (eta/N)
sum_i (|W_init||x_i| + |y_i|) |x_i|.|x_q|)``), so errors are measured relative to ``S`` and judged
against ``8 (n + d) eps``: no conditioning enters, because it is already in ``S``.

``worst_case`` (keys of :mod:`verification.statements.thm_linear.certificate`): ``wq, wk, wv, demos, context, queries``,
the library's ``attention_out`` and ``dual_out (Q, d_v)``; ``xs (N, d_x), ys (N, d_y), xq (Q, d_x),
w_init (d_y, d_x), learning_rate``, the library's ``prediction`` (LSA) and ``gd (Q, d_y)``; ``eps``
and ``dtype_bits``.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

import iclkd_jax as ik
from verification.cases.attention_batch import Measured, fmt, sweep
from verification.cases.strategies import (
    CHUNK,
    AttentionBatch,
    AttentionCase,
    draw_attention_batch,
    standard_normal_pool,
    tile_case,
)
from verification.core.model import Check, RunContext
from verification.core.tolerances import eps
from verification.oracles import reference

DTYPES = ("float64", "float32")
#: (attention shape (d, d_k, d_v, N, M, Q), regression shape (d_x, d_y, N)): M > 0 everywhere (a dropped
#: ΔW must show), N > 1 (a missing 1/N must show), Q = 3 regression queries
PAIRS = (((4, 2, 3, 4, 3, 2), (1, 1, 3)), ((8, 4, 3, 16, 3, 2), (3, 2, 5)), ((8, 4, 3, 16, 3, 2), (4, 2, 16)))
N_QUERIES = 3


@dataclasses.dataclass(frozen=True)
class LinearBatch:
    attention: AttentionBatch
    xs: np.ndarray
    ys: np.ndarray
    xq: np.ndarray
    w_init: np.ndarray
    learning_rate: np.ndarray

    @property
    def dtype(self) -> str:
        return self.attention.dtype

    def case(self, i: int) -> dict:
        return {**self.attention.case(i), "xs": self.xs[i].tolist(), "ys": self.ys[i].tolist(),
                "xq": self.xq[i].tolist(), "w_init": self.w_init[i].tolist(),
                "learning_rate": float(self.learning_rate[i]), "eps": eps(self.dtype)}


@jax.jit
def _regression_draw(key):
    normal_key, uniform_key = jax.random.split(key)
    return jax.random.normal(normal_key, (CHUNK, 128)), jax.random.uniform(uniform_key, (CHUNK,), minval=0.01, maxval=2.0)


def _regression_arrays(pool: np.ndarray, shape, dtype: str):
    dx, dy, n = shape
    b = pool.shape[0]
    sizes = [(n, dx), (n, dy), (N_QUERIES, dx), (dy, dx)]
    out, start = [], 0
    for s in sizes:
        size = s[0] * s[1]
        out.append(pool[:, start:start + size].reshape((b,) + s).astype(dtype).astype(np.float64))
        start += size
    return out


def draw_linear_batch(key, pair, dtype: str) -> LinearBatch:
    attention = draw_attention_batch(key, pair[0], dtype=dtype, max_scale=4.0)
    pool, lr = (np.asarray(a, np.float64) for a in _regression_draw(jax.random.fold_in(key, 1)))
    return LinearBatch(attention, *_regression_arrays(pool, pair[1], dtype), lr.astype(dtype).astype(np.float64))


def _example(wq, wk, wv, demos, context, queries, xs, ys, xq, w_init, lr_layer, lr_gd, keys_see_y):
    weights = ik.AttentionWeights(wq, wk, wv)
    attention = ik.linear_attention(weights, jnp.concatenate([demos, context]), queries)
    w0, dw = ik.linear_dual_weights(weights, demos, context)
    fm = ik.identity_features(key_dim=wk.shape[0])
    grad = jax.grad(lambda w: ik.kd_loss(w, weights, demos, feature_map=fm))(jnp.zeros_like(w0))
    dx, dy, n = xs.shape[1], ys.shape[1], xs.shape[0]
    lsa = ik.von_oswald_weights(dx, dy, learning_rate=lr_layer, n_demos=n, w_init=w_init)
    # keys_see_y = 0 leaves the library's W^K, W^Q exactly as they are (the y-in-keys mutant sets 1)
    eye = jnp.eye(dx + dy, dtype=xs.dtype)
    lsa = lsa._replace(wq=lsa.wq + keys_see_y * (eye - lsa.wq), wk=lsa.wk + keys_see_y * (eye - lsa.wk))
    out = ik.lsa_layer(lsa, ik.lsa_tokens(xs, ys), ik.lsa_query_tokens(xq, y_dim=dy, w_init=w_init))
    return {"attention": attention, "w0": w0, "dw": dw, "step": -(demos.shape[0] / 2) * grad, "lsa_out": out,
            "prediction": ik.lsa_prediction(out, y_dim=dy),
            "gd": ik.gd_step_prediction(xs, ys, xq, learning_rate=lr_gd, w_init=w_init)}


_program = jax.jit(jax.vmap(_example))


def quantities_under_test(batch: LinearBatch, mutant: str | None) -> dict[str, np.ndarray]:
    dtype = np.dtype(batch.dtype)
    n = batch.xs.shape[1]
    lr = batch.learning_rate
    lr_layer = {"step-size-times-2": 2 * lr, "missing-1/N": n * lr}.get(mutant, lr)
    keys_see_y = np.full(CHUNK, 1.0 if mutant == "y-in-keys" else 0.0)
    args = [*batch.attention.arrays, batch.xs, batch.ys, batch.xq, batch.w_init, lr_layer, lr, keys_see_y]
    out = _program(*(jax.device_put(np.asarray(a).astype(dtype)) for a in args))
    lib = {k: np.asarray(v, np.float64) for k, v in out.items()}
    if mutant == "drop-context-term":
        lib["dw"] = np.zeros_like(lib["dw"])
    q = batch.attention.queries @ np.swapaxes(batch.attention.wq, 1, 2)
    lib["dual"] = q @ np.swapaxes(lib["w0"] + lib["dw"], 1, 2)
    return lib


def measure(batch: LinearBatch, mutant: str | None) -> Measured:
    lib = quantities_under_test(batch, mutant)
    a = batch.attention
    t = lambda x: np.swapaxes(x, -1, -2)
    tokens = np.concatenate([a.demos, a.context], axis=1)
    ref_out = reference.linear_attention(a.wq, a.wk, a.wv, tokens, a.queries)
    ref_w0, _ = reference.linear_dual_weights(a.wk, a.wv, a.demos, a.context)
    # sums of absolute terms
    abs_v = np.abs(tokens) @ t(np.abs(a.wv))                                         # (B, n, d_v)
    abs_logits = (np.abs(a.queries) @ t(np.abs(a.wq))) @ t(np.abs(tokens) @ t(np.abs(a.wk)))   # (B, Q, n)
    scale = np.maximum((abs_logits * abs_v.max(axis=-1)[:, None, :]).sum(axis=-1).max(axis=1), 1e-300)
    abs_k = np.abs(a.demos) @ t(np.abs(a.wk))
    w0_scale = np.maximum(np.einsum("bnv,bnk->bvk", abs_v[:, :a.demos.shape[1]], abs_k).max(axis=(1, 2)), 1e-300)
    dual_error = np.maximum(np.abs(lib["attention"] - ref_out).max(axis=(1, 2)),
                            np.abs(lib["dual"] - ref_out).max(axis=(1, 2))) / scale
    w0_error = np.maximum(np.abs(lib["w0"] - ref_w0).max(axis=(1, 2)),
                          np.abs(lib["step"] - ref_w0).max(axis=(1, 2))) / w0_scale
    d = max(a.demos.shape[2], a.wk.shape[1])
    dual_tol = 8 * (tokens.shape[1] + d) * eps(batch.dtype)
    lr = batch.learning_rate
    n = batch.xs.shape[1]
    ref_gd = reference.gd_step_prediction(batch.xs, batch.ys, batch.xq, lr, batch.w_init)
    ref_layer = reference.von_oswald_layer(batch.xs, batch.ys, batch.xq, lr, batch.w_init)
    abs_r = np.abs(batch.xs) @ t(np.abs(batch.w_init)) + np.abs(batch.ys)              # (B, N, d_y)
    abs_xx = np.abs(batch.xq) @ t(np.abs(batch.xs))                                    # (B, Q, N)
    gd_scale = np.maximum(np.maximum((np.abs(batch.xq) @ t(np.abs(batch.w_init))).max(axis=(1, 2)),
                                     (lr / n) * (abs_xx[..., None] * abs_r[:, None]).sum(axis=2).max(axis=(1, 2))),
                          1e-300)
    dy = batch.ys.shape[2]
    gd_error = np.max([np.abs(lib["prediction"] - ref_gd).max(axis=(1, 2)), np.abs(lib["gd"] - ref_gd).max(axis=(1, 2)),
                       np.abs(lib["lsa_out"][..., -dy:] - ref_layer[..., -dy:]).max(axis=(1, 2))], axis=0) / gd_scale
    x_changed = np.abs(lib["lsa_out"][..., :-dy] - batch.xq).max(axis=(1, 2))
    gd_tol = 8 * (n + batch.xs.shape[2] + dy) * eps(batch.dtype)
    ratio = np.max([dual_error / dual_tol, w0_error / dual_tol, gd_error / gd_tol,
                    np.where(x_changed > 0, np.inf, 0.0)], axis=0)
    return Measured(ratio, None, {"max_dual_error": dual_error, "max_w0_error": w0_error, "max_gd_error": gd_error},
                    record={"attention_out": lib["attention"], "dual_out": lib["dual"],
                            "prediction": lib["prediction"], "gd": lib["gd"]})


def describe(batch: LinearBatch, i: int, measured: Measured) -> dict:
    return {**batch.case(i), **{k: v[i].tolist() for k, v in measured.record.items()}}


@dataclasses.dataclass(frozen=True)
class LinearCase:
    attention: AttentionCase
    pair: int
    learning_rate: float

    def describe(self) -> dict:
        return {**self.attention.describe(), "regression_shape": PAIRS[self.pair][1],
                "learning_rate": self.learning_rate}


def tile(case: LinearCase) -> LinearBatch:
    attention = tile_case(case.attention)
    pool = standard_normal_pool(case.attention.seed + 1, 128)
    arrays = _regression_arrays(np.broadcast_to(pool, (CHUNK, 128)), PAIRS[case.pair][1], case.attention.dtype)
    lr = float(np.asarray(case.learning_rate, case.attention.dtype))
    return LinearBatch(attention, *arrays, np.full(CHUNK, lr))


def linear_cases() -> st.SearchStrategy[LinearCase]:
    def build(seed, pair, scale, dtype, lr):
        return LinearCase(AttentionCase(seed, *PAIRS[pair][0], scale=scale, dtype=dtype), pair, lr)
    return st.builds(build, st.integers(0, 2**31 - 1), st.sampled_from(range(len(PAIRS))), st.floats(0.1, 4.0),
                     st.sampled_from(DTYPES), st.floats(0.01, 2.0))


class TheoremLinear(Check):
    id = "thm-linear"
    kind = "theorem"
    order = 314  # its place in the report: docs/statements.md order
    title = "linear attention = (W_0 + ΔW) q exactly (Dai et al.); one LSA layer = one GD step (von Oswald et al.)"
    mutants = {
        "step-size-times-2": "the LSA layer built with twice the GD step size",
        "missing-1/N": "the LSA projection P = eta I instead of (eta/N) I",
        "y-in-keys": "W^K = W^Q = I: the keys and queries also see the targets y",
        "drop-context-term": "ΔW (the query context's outer products) dropped from the dual form",
    }

    def run(self, ctx: RunContext):
        start = time.perf_counter()
        configs = [(pair, dtype) for dtype in DTYPES for pair in PAIRS]
        result = sweep(ctx, configs, draw=lambda key, config: draw_linear_batch(key, *config),
                       measure=lambda batch: measure(batch, ctx.mutant), strategy=linear_cases(), tile=tile,
                       describe=describe)
        f = result.figures
        figures = {f"{name}_{dt}": f.get(f"{name}_{dt}") for name in ("max_dual_error", "max_w0_error", "max_gd_error")
                   for dt in DTYPES}
        figures.update({"random_cases": result.random_cases, "violations": result.violations,
                        "cases_per_second": result.cases / (time.perf_counter() - start),
                        "per_case_quantiles": result.case_quantiles()})
        violated = result.violations or result.counterexample is not None
        return self.result(
            ctx, status="violated" if violated else "holds", cases=result.cases, worst=result.worst,
            worst_label="max error/tolerance", tolerance=1.0,
            tolerance_reason="errors relative to the sum of absolute terms, within 8 (n + d) eps per dtype "
                             "(round-off of n products of length d)",
            figures=figures, counterexample=result.counterexample, worst_case=result.worst_case,
            summary=(f"{result.cases} cases: dual form = reference to "
                     f"{fmt(figures['max_dual_error_float64'])} (f64) / {fmt(figures['max_dual_error_float32'])} "
                     f"(f32); von Oswald LSA = GD step = reference to {fmt(figures['max_gd_error_float64'])} (f64) / "
                     f"{fmt(figures['max_gd_error_float32'])} (f32), relative to the sum of absolute terms"))
