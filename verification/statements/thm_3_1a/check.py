"""thm-3.1a: softmax attention decomposes as (W_0 + ΔW) phi(q) (docs/statements.md#thm-3-1a, Theorem 3.1(a)).

Statement: ``Attn(x') = W_0 phi(q) + ΔW phi(q)`` with
``W_0 = (1/D') sum_{i<=N} v_i ⊗ phi(k_i)`` and ``ΔW = (1/D') sum_{j<=M} v'_j ⊗ phi(k'_j)``,
``D'`` the partition function over all N + M keys.

Measured, per case and query row, each against :mod:`verification.oracles.reference` (float64 NumPy) on
the same (dtype-rounded) inputs, two-sided (``|library - reference| <= tolerance``):

* the full attention :func:`iclkd_jax.softmax_attention` over ``[X_D; X_Q]`` against the reference
  softmax attention;
* ``W_0 phi(q)`` and ``ΔW phi(q)`` of :func:`iclkd_jax.kd_decomposition` against the reference split,
  and their sum against the reference attention;
* the representer operators of :func:`iclkd_jax.attention_operators` applied to ``phi(q)``
  (:func:`iclkd_jax.apply_operator`), each and merged by :func:`iclkd_jax.add_operators`, i.e.
  ``(W_0 + ΔW) phi(q)`` as an operator, against the reference split and attention;
* ``log ||W_0||_HS^2`` of :func:`iclkd_jax.hs_norm` against the reference's explicit double sum.

Cases: ``CHUNK`` cases per compiled call for each shape of ``attention_batch.KERNEL_SHAPES`` (d < d_k
and d > d_k, N = 1, M = 0) in float64 and float32, weights ``N(0, s^2/d)`` with s log-uniform in
[0.1, 6] (logits up to a few hundred), every draw from ``RunContext.key``; then Hypothesis
cases (same shapes) through the same compiled programs, shrunk to a minimal case on failure.

Tolerance: the round-off budget of :mod:`verification.cases.attention_batch`, per dtype,
derived from the sums of absolute terms of the logits and values (about 1e-13 relative in
float64 for logits of a few hundred, 1e-4 in float32).

``worst_case`` (the case with the largest error / tolerance): ``wq (d_k, d)``, ``wk (d_k, d)``,
``wv (d_v, d)``, ``demos (N, d)``, ``context (M, d)``, ``query (d,)`` (the token ``x'``), all exact
float64 (float32 cases converted exactly), and ``dtype_bits`` (64 or 32: the dtype the library ran in);
the library's outputs at that query, ``w0_out``, ``dw_out`` (from kd_decomposition) and ``op_out``
(``W_0`` from attention_operators applied to ``phi(q)``), each ``(1, d_v)``; ``tolerance``: the
check's budget for this case relative to ``max_j |v_j|`` (the keys of
:mod:`verification.statements.thm_3_1a.certificate`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from verification.cases.attention_batch import (
    KERNEL_SHAPES,
    Measured,
    error_ratio,
    fmt,
    library_quantities,
    reference_quantities,
    sweep,
    tolerances,
)
from verification.cases.strategies import attention_cases, draw_attention_batch, tile_case
from verification.core.model import Check, RunContext
from verification.oracles import reference

DTYPES = ("float64", "float32")
#: compared with the reference attention output (the right-hand side of Theorem 3.1(a))
_OUTPUTS = ("attention", "w0_plus_dw", "op_sum")


def quantities_under_test(batch, mutant: str | None) -> dict[str, np.ndarray]:
    """The library's quantities for ``batch``, with a check-injected mutant applied where asked."""
    if mutant == "half-temperature":
        # a hidden 1/2 in the logits (as if a 1/sqrt(d_k) with d_k = 4 slipped in)
        lib = library_quantities(dataclasses.replace(batch, wq=batch.wq * 0.5))
    else:
        lib = library_quantities(batch)
    if mutant == "drop-query-term":
        lib["dw_out"] = np.zeros_like(lib["dw_out"])
    elif mutant == "demo-only-partition":
        # W_0 normalised by the demonstrations' partition function instead of D'
        logits = reference.attention_logits(batch.wq, batch.wk, batch.demos, batch.queries)
        lib["w0_out"] = lib["w0_out"] * np.exp(lib["log_partition"] - reference.logsumexp(logits))[..., None]
    elif mutant == "operator-unit-scale":
        lib["op_w0"] = lib["op_w0"] * np.exp(lib["log_partition"])[..., None]
    lib["w0_plus_dw"] = lib["w0_out"] + lib["dw_out"]
    return lib


def measure(batch, mutant: str | None) -> Measured:
    lib = quantities_under_test(batch, mutant)
    ref = reference_quantities(batch)
    tol = tolerances(batch, ref)
    parts = [error_ratio(lib[name], ref["output"], tol["output"]) for name in _OUTPUTS]
    parts += [error_ratio(lib[name], ref[key], tol["output"])
              for name, key in (("w0_out", "w0_out"), ("dw_out", "dw_out"), ("op_w0", "w0_out"), ("op_dw", "dw_out"))]
    per_query = np.max(parts, axis=0)                                           # (B, Q)
    hs = error_ratio(lib["hs_log"], ref["hs_log"], tol["hs"])                   # (B,)
    ratio = np.maximum(per_query.max(axis=1), hs)
    value_scale = np.abs(np.concatenate([batch.demos, batch.context], axis=1) @ np.swapaxes(batch.wv, 1, 2)).max(
        axis=(1, 2))
    error = np.max([np.abs(lib[name] - ref["output"]).max(axis=(1, 2)) for name in _OUTPUTS], axis=0) / value_scale
    values = np.concatenate([batch.demos, batch.context], axis=1) @ np.swapaxes(batch.wv, 1, 2)
    max_v = np.abs(values).max(axis=(1, 2))
    return Measured(ratio, per_query.argmax(axis=1),
                    {"max_error": error, "max_logit": ref["max_abs_logit"],
                     "max_hs_log_error": np.abs(lib["hs_log"] - ref["hs_log"]),
                     "max_hs_condition": ref["hs_condition"]},
                    record={"w0_out": lib["w0_out"], "dw_out": lib["dw_out"], "op_out": lib["op_w0"],
                            "tolerance": tol["output"] / max_v[:, None]})


def describe(batch, i: int, measured: Measured) -> dict:
    return {**batch.case(i, int(measured.query[i])), **measured.case_record(i)}


class Theorem31a(Check):
    id = "thm-3.1a"
    kind = "theorem"
    order = 310  # its place in the report: docs/statements.md order
    title = "Attn(x') = W_0 phi(q) + ΔW phi(q) exactly (kernel form), against the reference attention"
    mutants = {
        "drop-query-term": "ΔW phi(q) dropped (the query context's gradient step)",
        "demo-only-partition": "W_0 normalised by the demonstrations' partition function, not D'",
        "half-temperature": "a hidden factor 1/2 inside the logits",
        "operator-unit-scale": "the representer operator W_0 missing its 1/D' scale",
    }

    def run(self, ctx: RunContext):
        configs = [(shape, dtype) for dtype in DTYPES for shape in KERNEL_SHAPES]
        result = sweep(ctx, configs,
                       draw=lambda key, config: draw_attention_batch(key, config[0], dtype=config[1]),
                       measure=lambda batch: measure(batch, ctx.mutant),
                       strategy=attention_cases(dtypes=DTYPES, shapes=KERNEL_SHAPES), tile=tile_case, describe=describe)
        f = result.figures
        figures = {"max_error_float64": f.get("max_error_float64"), "max_error_float32": f.get("max_error_float32"),
                   "max_logit": max(f.get("max_logit_float64", 0.0), f.get("max_logit_float32", 0.0)),
                   "max_hs_log_error_float64": f.get("max_hs_log_error_float64"),
                   "max_hs_condition": max(f.get("max_hs_condition_float64", 0.0),
                                           f.get("max_hs_condition_float32", 0.0)),
                   "random_cases": result.random_cases, "violations": result.violations,
                   "cases_per_second": result.cases_per_second, "per_case_quantiles": result.case_quantiles()}
        status = "violated" if result.violations or result.counterexample else "holds"
        return self.result(
            ctx, status=status, cases=result.cases, worst=result.worst, worst_label="max error/tolerance",
            tolerance=1.0,
            tolerance_reason="|library - reference| within the round-off budget of the logits and values per dtype "
                             "(verification/cases/attention_batch.py), two-sided, for softmax_attention, the split, the "
                             "operators and log ||W_0||_HS^2",
            figures=figures, counterexample=result.counterexample, worst_case=result.worst_case,
            summary=(f"{result.cases} cases: softmax_attention = W_0 phi(q) + "
                     f"ΔW phi(q) = reference to {fmt(figures['max_error_float64'])} (f64) / "
                     f"{fmt(figures['max_error_float32'])} (f32) relative to max|v|, logits up to "
                     f"{figures['max_logit']:.3g}; {result.violations} outside tolerance"))
