"""thm-3.1b: W_0 and ΔW are one KD step from 0 (docs/statements.md#thm-3-1b, Theorem 3.1(b)).

Statement: ``W_0 = 0 − eta grad L_D(0)`` with ``eta = N/(2D')`` and
``grad L_D(0) = −(2/N) sum_i v_i ⊗ phi(k_i)``; likewise ``ΔW`` with ``eta_Q = M/(2D')``
on the query context's loss.

Measured, every quantity against :mod:`verification.oracles.reference` on the same inputs, two-sided:

1. Kernel form (exact, vectorised: ``CHUNK`` cases per compiled call, 4 shapes x 2 dtypes, the
   program shared with thm-3.1a): ``log eta`` and ``log eta_Q`` of :func:`iclkd_jax.kd_decomposition`
   against the reference's ``log(N/2) − log D'``; the step
   ``distilled_weights(weights, X_D, log_eta=log eta)`` applied to ``phi(q)`` against the reference
   ``W_0 phi(q)`` (and the context's step with ``log eta_Q`` against ``ΔW phi(q)``); the teacher
   ``f_T(x_i) = W^V x_i`` (:func:`iclkd_jax.teacher`). Tolerance: the round-off budget of
   :mod:`verification.cases.attention_batch`.
2. Explicit features (vectorised too): for the Taylor map (order 8 at d_k = 2, 5 at d_k = 4), positive
   random features and trigonometric random features (m = 64, a fresh draw ``Omega, b`` per case,
   passed to the reference as arrays), in float64 and float32:
   the library's features ``phi(k_i)`` against the reference maps; ``grad L_D(0)`` by ``jax.grad`` of
   :func:`iclkd_jax.kd_loss` at ``W = 0`` against ``−(2/N) sum_i v_i phi(k_i)^T``; the matrix
   ``distilled_weights(..., feature_map=phi)`` (:func:`iclkd_jax.to_matrix`) against the reference
   ``(2 eta / N) sum_i v_i phi(k_i)^T``. Tolerance: ``4 (rho + (N + d + 4) u) S`` with ``S`` the sum of
   absolute terms (``(2/N) sum_i |W^V||x_i| A_i``, ``A_i`` an entrywise bound of ``|phi(k_i)|``) and
   ``rho`` the relative round-off of a feature: ``(p + 1)(d + 2) u`` for Taylor (p factors of rounded
   keys), ``(d + d_k + 6) u (1 + max_r |Omega_r||k| + |k|^2)`` for the random maps (the exponent's or
   the phase's absolute error).
   And, the approximation of Theorem 3.1(b) in a finite map: the Taylor step ``(−eta grad) phi(q)``
   must be within the Taylor remainder ``(1/D') sum_i |v_i| e^{max(t_i,0)} |t_i|^{p+1}/(p+1)!``
   (``t_i = k_i . q``) plus round-off of the exact ``W_0 phi(q)``. ``tightness`` = (bound + round-off) /
   observed error at the tightest entry (the Lagrange bound is nearly attained for small positive
   logits, so expect values near 1).

``worst_case`` (kernel form, the case with the largest error / tolerance): ``wq, wk (d_k, d)``,
``wv (d_v, d)``, ``demos (N, d)``, ``context (M, d)``, ``query (d,)``, ``dtype_bits``; the library's
steps at that query ``w0_out`` (``−eta grad L_D(0)`` applied to ``phi(q)``) and ``dw_out`` (the
context's), each ``(1, d_v)``; ``log_eta`` (the library's ``log eta`` at that query) and ``tolerance``
relative to ``max_j |v_j|`` (the keys of :mod:`verification.statements.thm_3_1b.certificate`).
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

import iclkd_jax as ik
from verification.cases.attention_batch import (
    KERNEL_SHAPES,
    Measured,
    SweepResult,
    error_ratio,
    fmt,
    library_quantities,
    reference_quantities,
    sweep,
    tolerances,
)
from verification.cases.strategies import CHUNK, attention_cases, draw_attention_batch, tile_case
from verification.core.model import Check, RunContext
from verification.core.tolerances import eps, require_finite
from verification.oracles import reference

DTYPES = ("float64", "float32")
TAYLOR_ORDER = {2: 8, 4: 5}
NUM_RANDOM_FEATURES = 64
#: (shape, dtype) of the explicit-feature batches: d_k = 2 and 4, logits of order 1 (scale <= 0.8)
EXPLICIT_CONFIGS = (((4, 2, 3, 4, 3, 2), "float64"), ((8, 4, 3, 16, 3, 2), "float64"),
                    ((8, 4, 3, 16, 3, 2), "float32"))
MAPS = ("taylor", "positive", "trig")


# ----------------------------------------------------------------------------------------
# 1. Kernel form
# ----------------------------------------------------------------------------------------

def steps_under_test(batch, mutant: str | None) -> dict[str, np.ndarray]:
    """The library's kernel-form steps ``−eta grad L(0)`` applied to ``phi(q)``, with a mutant applied."""
    lib = library_quantities(batch)
    if mutant == "eta-times-2":
        lib["step_w0"], lib["step_dw"] = 2 * lib["step_w0"], 2 * lib["step_dw"]
        lib["log_eta"], lib["log_eta_context"] = lib["log_eta"] + math.log(2), lib["log_eta_context"] + math.log(2)
    elif mutant == "context-eta-for-demos":
        m = batch.context.shape[1]
        lib["step_w0"] = lib["step_w0"] * (m / batch.demos.shape[1])
    elif mutant == "sign-flip":
        lib["step_w0"], lib["step_dw"] = -lib["step_w0"], -lib["step_dw"]
    return lib


def measure_kernel(batch, mutant: str | None) -> Measured:
    lib = steps_under_test(batch, mutant)
    ref = reference_quantities(batch)
    tol = tolerances(batch, ref)
    parts = [error_ratio(lib["step_w0"], ref["w0_out"], tol["output"]),
             error_ratio(lib["step_dw"], ref["dw_out"], tol["output"]),
             error_ratio(lib["log_eta"], ref["log_eta"], tol["log"]),
             error_ratio(lib["log_eta_context"], ref["log_eta_context"], tol["log"])]
    per_query = np.max(parts, axis=0)
    teacher = error_ratio(lib["teacher"], ref["teacher"], tol["output"][:, :1]).max(axis=1)
    ratio = np.maximum(per_query.max(axis=1), teacher)
    values = np.concatenate([batch.demos, batch.context], axis=1) @ np.swapaxes(batch.wv, 1, 2)
    max_v = np.abs(values).max(axis=(1, 2))
    error = np.maximum(np.abs(lib["step_w0"] - ref["w0_out"]).max(axis=(1, 2)),
                       np.abs(lib["step_dw"] - ref["dw_out"]).max(axis=(1, 2))) / max_v
    finite = np.where(np.isfinite(lib["log_eta"]), lib["log_eta"], np.nan)
    return Measured(ratio, per_query.argmax(axis=1),
                    {"max_kernel_error": error, "max_log_eta_error": np.abs(lib["log_eta"] - ref["log_eta"]).max(1),
                     "max_log10_eta": np.max(np.where(np.isnan(finite), -np.inf, finite), axis=1) / math.log(10),
                     "max_minus_log10_eta": -np.min(np.where(np.isnan(finite), np.inf, finite), axis=1) / math.log(10),
                     "max_entropy": ref["entropy"].max(axis=1), "max_minus_entropy": -ref["entropy"].min(axis=1)},
                    record={"w0_out": lib["step_w0"], "dw_out": lib["step_dw"], "log_eta": lib["log_eta"],
                            "tolerance": tol["output"] / max_v[:, None]})


def describe(batch, i: int, measured: Measured) -> dict:
    return {**batch.case(i, int(measured.query[i])), **measured.case_record(i)}


# ----------------------------------------------------------------------------------------
# 2. Explicit features: jax.grad of the KD loss, to_matrix, the Taylor step's remainder
# ----------------------------------------------------------------------------------------

def _explicit_example(wq, wk, wv, demos, context, queries, omega, offset, coef, log_scales, *, order):
    weights = ik.AttentionWeights(wq, wk, wv)
    dk = wk.shape[0]
    log_eta = ik.kd_decomposition(weights, demos, context, queries).log_eta[0]
    maps = {"taylor": ik.taylor_features(order, key_dim=dk),
            "positive": ik.FeatureMap("positive", key_dim=dk, omega=omega),
            "trig": ik.FeatureMap("trig", key_dim=dk, omega=omega, offset=offset)}
    # general representer operators (signed coefficients, different scales): the operator algebra itself
    n = demos.shape[0]
    first = ik.RepresenterOperator(coef[:n], demos @ wv.T, demos @ wk.T, log_scales[0])
    second = ik.RepresenterOperator(coef[n:], context @ wv.T, context @ wk.T, log_scales[1])
    z = queries[:1] @ wq.T
    hs = ik.hs_norm(first)
    out = {"log_eta": log_eta, "op_sum_out": ik.apply_operator(ik.add_operators(first, second), z),
           "op_first_out": ik.apply_operator(first, z), "op_hs_log": hs.log_value}
    for name, fm in maps.items():
        zero = jnp.zeros((wv.shape[0], fm.num_features), wv.dtype)
        out[f"{name}_grad"] = jax.grad(lambda w, fm=fm: ik.kd_loss(w, weights, demos, feature_map=fm))(zero)
        out[f"{name}_matrix"] = ik.distilled_weights(weights, demos, log_eta=log_eta, feature_map=fm)
        out[f"{name}_to_matrix"] = ik.to_matrix(first, fm)
        out[f"{name}_phi_k"] = fm(demos @ wk.T)
        out[f"{name}_phi_q"] = fm(queries[:1] @ wq.T)
    return out


@functools.partial(jax.jit, static_argnames="order")
def _explicit_program(wq, wk, wv, demos, context, queries, omega, offset, coef, log_scales, *, order):
    return jax.vmap(functools.partial(_explicit_example, order=order))(wq, wk, wv, demos, context, queries,
                                                                       omega, offset, coef, log_scales)


@jax.jit
def _draw_maps(key, shape_template):
    """Per case: ``Omega (m, d_k)`` rows N(0, I) and ``b (m,)`` uniform on [0, 2 pi) (the library's distributions);
    signed coefficients ``c (32,)`` N(0, 1) and two log scales uniform in [-3, 3] for the general operators."""
    omega_key, offset_key, coef_key, scale_key = jax.random.split(key, 4)
    dtype = shape_template.dtype
    omega = jax.random.normal(omega_key, (CHUNK, NUM_RANDOM_FEATURES, shape_template.shape[0]), dtype)
    offset = jax.random.uniform(offset_key, (CHUNK, NUM_RANDOM_FEATURES), dtype, 0.0, 2 * math.pi)
    return (omega, offset, jax.random.normal(coef_key, (CHUNK, 32), dtype),
            jax.random.uniform(scale_key, (CHUNK, 2), dtype, -3.0, 3.0))


def explicit_under_test(batch, draws, mutant: str | None) -> dict[str, np.ndarray]:
    dtype = np.dtype(batch.dtype)
    order = TAYLOR_ORDER[batch.shape[1]]
    out = _explicit_program(*batch.device(), *(jax.device_put(a.astype(dtype)) for a in draws), order=order)
    lib = {k: np.asarray(v, np.float64) for k, v in out.items()}
    for name in MAPS:
        if mutant == "grad-missing-2/N":
            lib[f"{name}_grad"] = lib[f"{name}_grad"] * batch.demos.shape[1] / 2
        elif mutant == "sign-flip":
            lib[f"{name}_matrix"] = -lib[f"{name}_matrix"]
        elif mutant == "eta-times-2":
            lib[f"{name}_matrix"] = 2 * lib[f"{name}_matrix"]
    return lib


def _reference_features(name, keys, omega, offset, order):
    if name == "taylor":
        return reference.taylor_features(keys, order)
    if name == "positive":
        return reference.positive_random_features(keys, omega)
    return reference.trig_random_features(keys, omega, offset)


def measure_explicit(batch, draws, mutant: str | None) -> dict:
    """Per-case ratios of the explicit-feature comparisons and of the Taylor step against its remainder."""
    u = eps(batch.dtype) / 2
    d, dk = batch.shape[0], batch.shape[1]
    n = batch.demos.shape[1]
    order = TAYLOR_ORDER[dk]
    omega, offset, coef_all, log_scales = draws
    n_total = n + batch.context.shape[1]
    coef, coef2 = coef_all[:, :n], coef_all[:, n:n_total]
    lib = explicit_under_test(batch, (omega, offset, coef_all[:, :n_total], log_scales), mutant)
    t = lambda a: np.swapaxes(a, -1, -2)
    keys, q = batch.demos @ t(batch.wk), batch.queries[:, :1] @ t(batch.wq)
    values = batch.demos @ t(batch.wv)
    abs_keys = np.abs(batch.demos) @ t(np.abs(batch.wk))
    abs_values = np.abs(batch.demos) @ t(np.abs(batch.wv))
    ref_split = reference.attention_split(*batch.arrays)
    log_eta = ref_split["log_eta"][:, 0]
    ratios, figures = {}, {}
    for name in MAPS:
        phi_k = _reference_features(name, keys, omega, offset, order)
        if name == "taylor":
            bound = reference.taylor_features(abs_keys, order)                    # |phi(k)| <= phi(|k|) entrywise
            rho = np.full(len(keys), (order + 1) * (d + 2) * u)
        else:
            k_norm2 = np.sum(abs_keys ** 2, axis=-1)                              # (B, N)
            proj = abs_keys @ t(np.abs(omega))                                    # (B, N, m)
            rho = (d + dk + 6) * u * (1 + proj.max(axis=(1, 2)) + k_norm2.max(axis=1))
            bound = (phi_k if name == "positive" else
                     np.exp(0.5 * np.sum(keys ** 2, -1, keepdims=True)) * math.sqrt(2 / NUM_RANDOM_FEATURES)
                     * np.ones_like(phi_k))
        scale = (2.0 / n) * (t(abs_values) @ bound)                               # (B, d_v, m)
        budget = 4 * (rho + (n + d + 4) * u)
        grad_ref = reference.kd_gradient_at_zero(values, phi_k)
        matrix_ref = reference.representer_matrix(np.ones(values.shape[:2]), values, phi_k, math.log(2.0 / n) + log_eta)
        feature_ratio = (np.abs(lib[f"{name}_phi_k"] - phi_k) / (4 * rho[:, None, None] * bound + 1e-300)).max(axis=(1, 2))
        grad_ratio = (np.abs(lib[f"{name}_grad"] - grad_ref) / (budget[:, None, None] * scale + 1e-300)).max(axis=(1, 2))
        eta_scale = np.exp(log_eta)[:, None, None]
        tau = 8 * u * (1 + np.abs(ref_split["logits"]).max(axis=(1, 2)) + math.log(n + batch.context.shape[1]))
        matrix_ratio = (np.abs(lib[f"{name}_matrix"] - matrix_ref)
                        / ((budget + tau)[:, None, None] * eta_scale * scale + 1e-300)).max(axis=(1, 2))
        # to_matrix of a general operator (signed c_i, scale e^s): exp(s) sum_i c_i v_i phi(k_i)^T
        op_ref = reference.representer_matrix(coef, values, phi_k, log_scales[:, 0])
        op_scale = np.exp(log_scales[:, 0])[:, None, None] * (t(np.abs(coef)[..., None] * abs_values) @ bound)
        to_matrix_ratio = (np.abs(lib[f"{name}_to_matrix"] - op_ref)
                           / ((budget + 4 * u * 3)[:, None, None] * op_scale + 1e-300)).max(axis=(1, 2))
        ratios[name] = np.maximum.reduce([feature_ratio, grad_ratio, matrix_ratio, to_matrix_ratio])
        figures[f"{name}_to_matrix_ratio"] = float(to_matrix_ratio.max())
        figures[f"{name}_grad_ratio"] = float(grad_ratio.max())
        figures[f"{name}_matrix_ratio"] = float(matrix_ratio.max())
        figures[f"{name}_feature_ratio"] = float(feature_ratio.max())
    # Theorem 3.1(b) in the Taylor map: the step approaches W_0 phi(q) within the Taylor remainder
    stepped = (lib["taylor_phi_q"] @ t(lib["taylor_matrix"]))[:, 0]               # (B, d_v)
    logits = keys @ t(q)                                                           # (B, N, 1)
    remainder = np.exp(-ref_split["log_partition"][:, 0])[:, None] * np.sum(
        reference.taylor_remainder_bound(logits, order) * np.abs(values), axis=1)
    roundoff = 4 * (order + 1) * (d + n + 8) * u * (1 + np.abs(logits).max(axis=(1, 2)))[:, None] \
        * np.abs(values).max(axis=1)
    step_error = np.abs(stepped - ref_split["w0_out"][:, 0])
    step_ratio = (step_error / (remainder + roundoff)).max(axis=1)
    # the operator algebra on general operators: apply_operator(add_operators(W_1, W_2)) and hs_norm(W_1)
    ctx_values = batch.context @ t(batch.wv)
    ctx_keys = batch.context @ t(batch.wk)
    want_sum = (reference.apply_representer(coef, values, keys, log_scales[:, 0], q)
                + reference.apply_representer(coef2, ctx_values, ctx_keys, log_scales[:, 1], q))[:, 0]
    abs_ctx_values = np.abs(batch.context) @ t(np.abs(batch.wv))
    abs_q = np.abs(batch.queries[:, :1]) @ t(np.abs(batch.wq))
    abs_logits = np.concatenate([abs_keys, np.abs(batch.context) @ t(np.abs(batch.wk))], axis=1) @ t(abs_q)
    logits_all = np.concatenate([keys, ctx_keys], axis=1) @ t(q)                    # (B, n+M, 1)
    weights_abs = np.exp(logits_all[..., 0] + np.concatenate(
        [np.repeat(log_scales[:, :1], n, 1), np.repeat(log_scales[:, 1:], n_total - n, 1)], axis=1))
    sum_scale = np.sum(np.abs(coef_all[:, :n_total])[..., None] * weights_abs[..., None]
                       * np.concatenate([abs_values, abs_ctx_values], axis=1), axis=1)   # (B, d_v)
    gamma = (2 * d + dk + 2) * u
    op_budget = 4 * (2 * gamma * abs_logits.max(axis=(1, 2)) + (n_total + d + 8) * u
                     + 2 * u * (np.abs(log_scales).max(axis=1) + np.abs(logits_all).max(axis=(1, 2))))
    sum_ratio = (np.abs(lib["op_sum_out"][:, 0] - want_sum) / (op_budget[:, None] * sum_scale.max(axis=1)[:, None]
                                                               + 1e-300)).max(axis=1)
    hs_want, _ = reference.hs_norm_squared(coef, values, keys, log_scales[:, 0])
    exponents = keys @ t(keys)
    shift = exponents.max(axis=(1, 2))
    absolute = np.sum(np.abs(coef[:, :, None] * coef[:, None, :]) * (abs_values @ t(abs_values))
                      * np.exp(exponents - shift[:, None, None]), axis=(1, 2))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        condition = absolute / np.exp(hs_want - 2 * log_scales[:, 0] - shift)
        kabs = (abs_keys @ t(abs_keys)).max(axis=(1, 2))
        hs_tol = 4 * (condition * (n * n + 2 * d + values.shape[-1] + 4) * u + 2 * gamma * kabs
                      + 4 * u * (kabs + 2 * np.abs(log_scales[:, 0]) + np.abs(hs_want)))
        hs_err = np.where(lib["op_hs_log"] == hs_want, 0.0, np.abs(lib["op_hs_log"] - hs_want))
        hs_ratio = np.where(np.isfinite(hs_tol), hs_err / hs_tol, 0.0)   # a sum cancelled to 0 cannot be judged
    figures.update({"operator_sum_ratio": float(sum_ratio.max()), "operator_hs_ratio": float(np.nanmax(hs_ratio)),
                    "operator_hs_condition_max": float(condition.max())})
    require_finite({"HS norm error ratio": hs_ratio}, allow_inf=True)
    ratio = np.maximum.reduce([np.maximum.reduce(list(ratios.values())), step_ratio, sum_ratio, hs_ratio])
    figures.update({"taylor_step_ratio": float(step_ratio.max()), "taylor_step_error": float(step_error.max())})
    return {"ratio": ratio, "figures": figures}


class Theorem31b(Check):
    id = "thm-3.1b"
    kind = "theorem"
    order = 311  # its place in the report: docs/statements.md order
    title = "W_0 = −eta grad L_D(0), eta = N/(2D'); ΔW likewise with eta_Q = M/(2D') (kernel form and jax.grad)"
    mutants = {
        "eta-times-2": "the step size eta (and eta_Q) off by a factor 2",
        "grad-missing-2/N": "the KD gradient missing its factor 2/N",
        "context-eta-for-demos": "the demonstrations' step taken with the context's eta_Q = M/(2D')",
        "sign-flip": "the step taken up the gradient: W_0 = +eta grad L_D(0)",
    }

    def run(self, ctx: RunContext):
        start = time.perf_counter()
        # 2. explicit features first (3 compiled programs): logits of order 1 (weights scale <= 0.8),
        # a fresh Omega, b per case
        explicit_key = jax.random.fold_in(ctx.key, 1 << 20)
        explicit_cases, explicit_worst, explicit_failure, ex_figures = 0, 0.0, None, {}
        for c, (shape, dtype) in enumerate(EXPLICIT_CONFIGS):
            key = jax.random.fold_in(explicit_key, c)
            batch = draw_attention_batch(key, shape, dtype=dtype, min_scale=0.1, max_scale=0.8)
            draws = tuple(np.asarray(a, np.float64).astype(dtype).astype(np.float64)
                          for a in _draw_maps(jax.random.fold_in(key, 1), jnp.zeros((shape[1],))))
            omega, offset = draws[:2]
            m = measure_explicit(batch, draws, ctx.mutant)
            explicit_cases += CHUNK
            i = int(np.argmax(m["ratio"]))
            explicit_worst = max(explicit_worst, float(m["ratio"][i]))
            if not m["ratio"][i] <= 1 and explicit_failure is None:
                explicit_failure = {"part": "explicit features", **batch.case(i, 0), "ratio": float(m["ratio"][i]),
                                    "omega": omega[i].tolist(), "offset": offset[i].tolist()}
            for k, v in m["figures"].items():
                ex_figures[k] = max(ex_figures.get(k, 0.0), v)
        # 1. kernel form; a failure above settles the verdict: the sweep is then skipped
        if explicit_failure is None:
            configs = [(shape, dtype) for dtype in DTYPES for shape in KERNEL_SHAPES]
            result = sweep(ctx, configs,
                           draw=lambda key, config: draw_attention_batch(key, config[0], dtype=config[1]),
                           measure=lambda batch: measure_kernel(batch, ctx.mutant),
                           strategy=attention_cases(dtypes=DTYPES, shapes=KERNEL_SHAPES), tile=tile_case,
                           describe=describe)
        else:
            result = SweepResult(worst=0.0)
        f = result.figures
        figures = {"max_kernel_error_float64": f.get("max_kernel_error_float64"),
                   "per_case_quantiles": result.case_quantiles("kernel-form error / tolerance"),
                   "max_kernel_error_float32": f.get("max_kernel_error_float32"),
                   "max_log_eta_error_float64": f.get("max_log_eta_error_float64"),
                   "log10_eta_range": [-max(f.get("max_minus_log10_eta_float64", 0), f.get("max_minus_log10_eta_float32", 0)),
                                       max(f.get("max_log10_eta_float64", 0), f.get("max_log10_eta_float32", 0))],
                   "attention_entropy_range": [-max(f.get("max_minus_entropy_float64", 0),
                                                    f.get("max_minus_entropy_float32", 0)),
                                               max(f.get("max_entropy_float64", 0), f.get("max_entropy_float32", 0))],
                   "max_grad_error_over_tolerance": max(ex_figures[f"{k}_grad_ratio"] for k in MAPS),
                   "max_to_matrix_error_over_tolerance": max(ex_figures[f"{k}_matrix_ratio"] for k in MAPS),
                   "max_feature_error_over_tolerance": max(ex_figures[f"{k}_feature_ratio"] for k in MAPS),
                   "max_to_matrix_general_over_tolerance": max(ex_figures[f"{k}_to_matrix_ratio"] for k in MAPS),
                   "operator_algebra_over_tolerance": {"add_operators+apply": ex_figures["operator_sum_ratio"],
                                                       "hs_norm": ex_figures["operator_hs_ratio"],
                                                       "hs_condition_max": ex_figures["operator_hs_condition_max"]},
                   "max_step_error_over_taylor_bound": ex_figures["taylor_step_ratio"],
                   "max_step_error": ex_figures["taylor_step_error"],
                   "explicit": ex_figures, "explicit_cases": explicit_cases,
                   "taylor_orders": {f"d_k={k}": p for k, p in TAYLOR_ORDER.items()},
                   "num_random_features": NUM_RANDOM_FEATURES,
                   "random_cases": result.random_cases, "violations": result.violations,
                   "cases_per_second": (result.cases + explicit_cases) / (time.perf_counter() - start)}
        counterexample = result.counterexample or explicit_failure
        status = "violated" if (result.violations or result.counterexample or explicit_failure) else "holds"
        tightness = 1.0 / max(figures["max_step_error_over_taylor_bound"], 1e-300)
        return self.result(
            ctx, status=status, cases=result.cases + explicit_cases, worst=max(result.worst, explicit_worst),
            worst_label="max error/tolerance", tolerance=1.0,
            tolerance_reason="kernel form: round-off budget of the logits and values (verification/cases/attention_batch.py); "
                             "explicit maps: 4 (rho + (N + d + 4) u) times the sum of absolute terms, rho the "
                             "feature's relative round-off; Taylor step: Lagrange remainder + round-off",
            tightness=tightness if np.isfinite(tightness) else None, figures=figures, counterexample=counterexample,
            worst_case=result.worst_case,
            summary=(f"{result.cases} kernel-form cases: -eta grad L(0) phi(q) = "
                     f"reference to {fmt(figures['max_kernel_error_float64'])} (f64) / "
                     f"{fmt(figures['max_kernel_error_float32'])} (f32); {explicit_cases} explicit cases "
                     f"(Taylor, positive, trig): jax.grad and to_matrix within "
                     f"{max(figures['max_grad_error_over_tolerance'], figures['max_to_matrix_error_over_tolerance']):.2f}"
                     f" of tolerance; Taylor step error {figures['max_step_error']:.1e}, "
                     f"{figures['max_step_error_over_taylor_bound']:.2f} of its remainder bound"))
