"""thm-3.1a: softmax attention decomposes as (W_0 + ΔW) phi(q) (THEOREMS.md, Theorem 3.1(a)).

Statement: ``Attn(x') = W_0 phi(q) + ΔW phi(q)`` with
``W_0 = (1/D') sum_{i<=N} v_i ⊗ phi(k_i)`` and ``ΔW = (1/D') sum_{j<=M} v'_j ⊗ phi(k'_j)``,
``D'`` the partition function over all N + M keys.

Measured: for each case, the library's ``w0_out`` and ``dw_out`` against an
independent float64 NumPy split of the attention sum (each term
``v_j exp(l_j - max l) / sum exp(l - max l)``), their sum against the full
attention, and ``W_0`` as a representer operator applied to ``phi(q)``. The
error is measured relative to ``max_j |v_j|`` (the outputs are sub-convex
combinations of the values, so this is the natural scale).

Tolerance: a logit carries an absolute round-off of about ``eps * sum|k||q|``
(the dot product), which perturbs each softmax weight by that relative amount;
hence ``64 * eps * (1 + max |k_j| |q|)``: about 1e-12 in float64 for logits of a
few hundred, 1e-5 in float32 for logits of order 10.
"""

from __future__ import annotations

import numpy as np

import iclkd_jax as ik
from verification.registry import Check, RunContext, register
from verification.search import explore
from verification.strategies import attention_cases, numpy_attention_split
from verification.tolerances import eps


def decomposition_under_test(weights, demos, context, queries, mutant):
    """The library's decomposition, with a mutant applied where asked."""
    dec = ik.kd_decomposition(weights, demos, context, queries)
    w0_out, dw_out = np.asarray(dec.w0_out), np.asarray(dec.dw_out)
    if mutant == "drop-query-term":
        dw_out = np.zeros_like(dw_out)
    elif mutant == "demo-only-partition":
        # normalising W_0 by the demonstrations' partition function instead of D'
        demo_dec = ik.kd_decomposition(weights, demos, None, queries)
        w0_out = np.asarray(demo_dec.w0_out)
    elif mutant == "half-temperature":
        # a hidden 1/2 in the logits (as if a 1/sqrt(d_k) with d_k = 4 slipped in)
        halved = ik.AttentionWeights(weights.wq * 0.5, weights.wk, weights.wv)
        dec = ik.kd_decomposition(halved, demos, context, queries)
        w0_out, dw_out = np.asarray(dec.w0_out), np.asarray(dec.dw_out)
    # The W_0 operator, applied in representer form, must agree as well.
    op_out = np.stack([
        np.asarray(ik.apply_operator(ik.attention_operators(weights, demos, context, queries[i])[0],
                                     (queries[i:i + 1] @ weights.wq.T)))[0]
        for i in range(queries.shape[0])])
    if mutant == "operator-unit-scale":
        op_out = op_out * np.exp(np.asarray(dec.log_partition))[:, None]
    return w0_out, dw_out, op_out


@register
class Theorem31a(Check):
    id = "thm-3.1a"
    kind = "theorem"
    title = "Attn(x') = W_0 phi(q) + ΔW phi(q) exactly (kernel form)"
    mutants = {
        "drop-query-term": "ΔW phi(q) dropped (the query context's gradient step)",
        "demo-only-partition": "W_0 normalised by the demonstrations' partition function, not D'",
        "half-temperature": "a hidden factor 1/2 inside the logits",
        "operator-unit-scale": "the representer operator W_0 missing its 1/D' scale",
    }

    def run(self, ctx: RunContext):
        def measure(case):
            weights, demos, context, queries = case.build()
            w0_out, dw_out, op_out = decomposition_under_test(weights, demos, context, queries, ctx.mutant)
            ref_w0, ref_dw, max_logit = numpy_attention_split(weights, demos, context, queries)
            value_scale = max(float(np.abs(np.asarray(demos, np.float64) @ np.asarray(weights.wv, np.float64).T).max()),
                              float(np.abs(np.asarray(context, np.float64) @ np.asarray(weights.wv, np.float64).T).max())
                              if context.shape[0] else 0.0)
            error = max(np.abs(w0_out - ref_w0).max(), np.abs(dw_out - ref_dw).max(),
                        np.abs(op_out - ref_w0).max()) / value_scale
            tolerance = 64 * eps(case.dtype) * (1.0 + max_logit)
            return {"error": float(error), "tolerance": float(tolerance), "ratio": float(error / tolerance),
                    "dtype": case.dtype, "max_logit": float(max_logit)}

        exploration = explore(attention_cases(dtypes=("float64", "float32")), measure,
                              max_examples=ctx.profile.examples * 2, seed_value=ctx.hypothesis_seed,
                              fails=lambda m: m["ratio"] > 1.0, shrink=ctx.shrink)
        ms = exploration.measurements
        worst = max(ms, key=lambda m: m["ratio"])
        by_dtype = {dt: max((m["error"] for m in ms if m["dtype"] == dt), default=None) for dt in ("float64", "float32")}
        status = "violated" if exploration.counterexample else "holds"
        counterexample = None
        if exploration.counterexample:
            case, m = exploration.counterexample
            counterexample = {"case": case.describe(), **m}
        return self.result(
            ctx, status=status, cases=exploration.cases, worst=worst["ratio"], worst_label="max error/tolerance",
            tolerance=1.0, tolerance_reason="error relative to max|v_j| within 64*eps*(1+max|logit|) per dtype "
                                            "(round-off of the logits, THEOREMS.md 3.1)",
            figures={"max_error_float64": by_dtype["float64"], "max_error_float32": by_dtype["float32"],
                     "max_logit": max(m["max_logit"] for m in ms)},
            counterexample=counterexample,
            summary=(f"max error float64 {by_dtype['float64']:.2e}, float32 {by_dtype['float32']:.2e} "
                     f"(relative to max|v|), logits up to {max(m['max_logit'] for m in ms):.3g}"
                     if by_dtype["float32"] is not None else f"max error float64 {by_dtype['float64']:.2e}"))
