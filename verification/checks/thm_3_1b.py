"""thm-3.1b: W_0 and ΔW are one KD step from 0 (THEOREMS.md, Theorem 3.1(b)).

Statement: ``W_0 = 0 − eta grad L_D(0)`` with ``eta = N/(2D')`` and
``grad L_D(0) = −(2/N) sum_i v_i ⊗ phi(k_i)``; likewise ``ΔW`` with ``eta_Q = M/(2D')``
on the query context's loss.

Measured, per case:

1. Kernel form (exact): the representer operator
   ``distilled_weights(weights, X_D, log_eta=log(N/(2D')))`` applied to ``phi(q)``
   against an independent float64 NumPy split of the attention sum (and the same for the
   context with ``log eta_Q``). Error relative to ``max|v_j|``, tolerance
   ``64 eps (1 + max|logit|)`` as in thm-3.1a (round-off of the logits).
2. Explicit features: the Taylor map of order p (p = 8 for d_k = 2, p = 5 for d_k = 4) on
   problems with logits of order 1. ``grad L_D(0)`` by ``jax.grad`` of ``kd_loss`` at
   ``W = 0`` must equal ``−(2/N) sum_i v_i phi(k_i)^T`` to round-off
   (``16 (N + d_v) eps`` relative to ``(2/N) sum_i |v_i| |phi(k_i)|``); and the step
   ``−eta grad`` applied to ``phi(q)`` must approach ``W_0 phi(q)`` within the Taylor
   remainder ``(1/D') sum_i |v_i| exp(|t_i|) |t_i|^{p+1}/(p+1)!``, ``t_i = k_i . q``, plus
   round-off. ``tightness`` = (remainder bound + round-off) / observed error at the
   tightest entry: the Lagrange bound is nearly attained for small positive logits
   (``remainder / bound = e^{-t}(1 + t/(p+2) + ...) -> 1``), so expect values near 1.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

import iclkd_jax as ik
from verification.registry import Check, RunContext, register
from verification.search import explore
from verification.strategies import attention_cases, numpy_attention_split
from verification.tolerances import eps

_TAYLOR_ORDER = {2: 8, 4: 5}


@jax.jit
def _grad_at_zero(feature_map, weights, tokens):
    """``grad L(0)`` of the explicit KD loss ``(1/n) sum ||v_i − W phi(k_i)||^2`` by ``jax.grad``."""
    zero = jnp.zeros((weights.wv.shape[0], feature_map.num_features), tokens.dtype)
    return jax.grad(lambda w: ik.kd_loss(w, weights, tokens, feature_map=feature_map))(zero)


@jax.jit
def _features(feature_map, u):
    """``phi(u)`` in one compiled program (the eager Taylor map dispatches and compiles op by op)."""
    return feature_map(u)


def _log_etas(dec, mutant):
    log_eta, log_eta_q = np.asarray(dec.log_eta, np.float64), np.asarray(dec.log_eta_context, np.float64)
    if mutant == "eta-times-2":
        log_eta, log_eta_q = log_eta + math.log(2.0), log_eta_q + math.log(2.0)
    elif mutant == "context-eta-for-demos":
        log_eta = log_eta_q
    return log_eta, log_eta_q


def kernel_steps_under_test(weights, demos, context, queries, mutant):
    """``W_0 phi(q)`` and ``ΔW phi(q)`` as one KD step in representer form, per query."""
    dec = ik.kd_decomposition(weights, demos, context, queries)
    log_eta, log_eta_q = _log_etas(dec, mutant)
    sign = -1.0 if mutant == "sign-flip" else 1.0
    q = np.asarray(queries, np.float64) @ np.asarray(weights.wq, np.float64).T
    dtype = demos.dtype
    w0_out, dw_out = [], []
    for i in range(q.shape[0]):
        zi = jax.device_put(q[i:i + 1].astype(dtype))
        if not np.isfinite(log_eta[i]):  # a step of size exp(-inf) = 0 (the context's eta when M = 0)
            w0_out.append(np.zeros(weights.wv.shape[0]))
            dw_out.append(np.zeros(weights.wv.shape[0]))
            continue
        op = ik.distilled_weights(weights, demos, log_eta=jax.device_put(np.asarray(log_eta[i], dtype)))
        w0_out.append(sign * np.asarray(ik.apply_operator(op, zi), np.float64)[0])
        if context.shape[0]:
            op_q = ik.distilled_weights(weights, context, log_eta=jax.device_put(np.asarray(log_eta_q[i], dtype)))
            dw_out.append(sign * np.asarray(ik.apply_operator(op_q, zi), np.float64)[0])
        else:
            dw_out.append(np.zeros(weights.wv.shape[0]))
    return np.stack(w0_out), np.stack(dw_out), dec


def explicit_steps_under_test(feature_map, weights, tokens, query_features, log_eta, mutant):
    """``jax.grad`` of the explicit loss at 0, and ``(−eta grad) phi(q)`` per query."""
    grad = np.asarray(_grad_at_zero(feature_map, weights, tokens), np.float64)
    if mutant == "grad-missing-2/N":
        grad = grad * tokens.shape[0] / 2.0
    step = -1.0 if mutant != "sign-flip" else 1.0
    return grad, step * np.exp(log_eta)[:, None] * (query_features @ grad.T)


def _taylor_remainder(t, order):
    t = np.abs(t)
    return np.exp(t) * t ** (order + 1) / math.factorial(order + 1)


@register
class Theorem31b(Check):
    id = "thm-3.1b"
    kind = "theorem"
    title = "W_0 = −eta grad L_D(0), eta = N/(2D'); ΔW likewise with eta_Q = M/(2D') (kernel form and jax.grad)"
    mutants = {
        "eta-times-2": "the step size eta (and eta_Q) off by a factor 2",
        "grad-missing-2/N": "the KD gradient missing its factor 2/N",
        "context-eta-for-demos": "the demonstrations' step taken with the context's eta_Q = M/(2D')",
        "sign-flip": "the step taken up the gradient: W_0 = +eta grad L_D(0)",
    }

    def run(self, ctx: RunContext):
        def measure(case):
            exact_case, explicit_scale = case
            # the explicit part reuses the case's shapes (no extra compilations) with logits of order 1
            explicit_case = dataclasses.replace(exact_case, scale=explicit_scale, dtype="float64")
            # 1. kernel form, any logits, float64 and float32
            weights, demos, context, queries = exact_case.build()
            w0_out, dw_out, _ = kernel_steps_under_test(weights, demos, context, queries, ctx.mutant)
            ref_w0, ref_dw, max_logit = numpy_attention_split(weights, demos, context, queries)
            values = np.concatenate([np.asarray(demos, np.float64), np.asarray(context, np.float64)]) \
                @ np.asarray(weights.wv, np.float64).T
            kernel_error = max(np.abs(w0_out - ref_w0).max(), np.abs(dw_out - ref_dw).max()) / np.abs(values).max()
            kernel_tol = 64 * eps(exact_case.dtype) * (1.0 + max_logit)
            # 2. explicit Taylor features, logits of order 1, float64
            weights, demos, context, queries = explicit_case.build()
            wq, wk, wv = (np.asarray(w, np.float64) for w in weights)
            order = _TAYLOR_ORDER[wk.shape[0]]
            fm = ik.taylor_features(order, key_dim=wk.shape[0])
            q = np.asarray(queries, np.float64) @ wq.T
            q_features = np.asarray(_features(fm, jax.device_put(q)), np.float64)
            dec = ik.kd_decomposition(weights, demos, context, queries)
            log_eta, log_eta_q = _log_etas(dec, ctx.mutant)
            ref_w0, ref_dw, max_logit = numpy_attention_split(weights, demos, context, queries)
            log_partition = np.asarray(dec.log_partition, np.float64)
            grad_ratio, step_ratio, step_error = 0.0, 0.0, 0.0
            parts = [(demos, log_eta, ref_w0)] + ([(context, log_eta_q, ref_dw)] if context.shape[0] else [])
            for tokens, part_eta, reference in parts:
                x = np.asarray(tokens, np.float64)
                v, phi_k = x @ wv.T, np.asarray(_features(fm, jax.device_put(x @ wk.T)), np.float64)
                n = x.shape[0]
                grad, stepped = explicit_steps_under_test(fm, weights, tokens, q_features, part_eta, ctx.mutant)
                ref_grad = -(2.0 / n) * v.T @ phi_k
                grad_scale = (2.0 / n) * (np.abs(v).T @ np.abs(phi_k)).max()
                grad_ratio = max(grad_ratio, np.abs(grad - ref_grad).max() / grad_scale
                                 / (16 * (n + v.shape[1]) * eps("float64")))
                t = q @ (x @ wk.T).T                                       # (queries, n) logits
                bound = np.exp(-log_partition)[:, None] * (_taylor_remainder(t, order) @ np.abs(v))
                roundoff = 64 * eps("float64") * (1 + max_logit) * np.abs(v).max()
                error = np.abs(stepped - reference)
                step_error = max(step_error, float(error.max()))
                step_ratio = max(step_ratio, float((error / (bound + roundoff)).max()))
            ratio = max(kernel_error / kernel_tol, grad_ratio, step_ratio)
            return {"dtype": exact_case.dtype, "kernel_error": float(kernel_error), "max_logit": float(max_logit),
                    "grad_ratio": float(grad_ratio), "step_ratio": step_ratio, "step_error": step_error,
                    "ratio": float(ratio),
                    "eta": float(np.exp(np.asarray(dec.log_eta)).max()),
                    "entropy": float(np.asarray(dec.attention_entropy).mean())}

        strategy = st.tuples(attention_cases(dtypes=("float64", "float32")), st.floats(0.1, 0.8))
        exploration = explore(strategy, measure, max_examples=ctx.profile.examples * 2,
                              seed_value=ctx.hypothesis_seed, fails=lambda m: m["ratio"] > 1.0, shrink=ctx.shrink)
        ms = exploration.measurements
        worst = max(ms, key=lambda m: m["ratio"])
        by_dtype = {dt: max((m["kernel_error"] for m in ms if m["dtype"] == dt), default=None)
                    for dt in ("float64", "float32")}
        figures = {"max_kernel_error_float64": by_dtype["float64"], "max_kernel_error_float32": by_dtype["float32"],
                   "max_grad_error_over_tolerance": max(m["grad_ratio"] for m in ms),
                   "max_step_error_over_taylor_bound": max(m["step_ratio"] for m in ms),
                   "max_step_error": max(m["step_error"] for m in ms),
                   "taylor_orders": {f"d_k={k}": p for k, p in _TAYLOR_ORDER.items()},
                   "eta_range": [min(m["eta"] for m in ms), max(m["eta"] for m in ms)],
                   "mean_attention_entropy_range": [min(m["entropy"] for m in ms), max(m["entropy"] for m in ms)]}
        counterexample = None
        if exploration.counterexample:
            case, m = exploration.counterexample
            counterexample = {"case": case[0].describe(), "explicit_scale": case[1], **m}
        # (remainder bound + round-off) / observed error, at the tightest entry: >= 1, and 1 = tight
        tightness = 1.0 / max(figures["max_step_error_over_taylor_bound"], 1e-300)
        return self.result(
            ctx, status="violated" if counterexample else "holds", cases=exploration.cases, worst=worst["ratio"],
            worst_label="max error/tolerance", tolerance=1.0,
            tolerance_reason="kernel form: 64 eps (1 + max|logit|) relative to max|v|; jax.grad: 16 (N + d_v) eps "
                             "relative to the sum of absolute terms; explicit step: Taylor remainder + round-off",
            tightness=tightness if np.isfinite(tightness) else None, figures=figures, counterexample=counterexample,
            summary=(f"kernel-form step error {by_dtype['float64']:.1e} (f64) / {by_dtype['float32'] or 0:.1e} (f32); "
                     f"jax.grad = -(2/N) sum v phi(k) to {figures['max_grad_error_over_tolerance']:.2f} of tolerance; "
                     f"Taylor step error {figures['max_step_error']:.1e}, "
                     f"{figures['max_step_error_over_taylor_bound']:.2f} of its remainder bound"))
