"""Theorem 3.1 quantities for a whole batch of cases: the library in one compiled call, the reference vectorised.

Shared by thm-3.1a, thm-3.1b and lemma-eta: the library's single-example
functions are traced once per ``(shape, dtype)`` under ``jax.vmap`` and ``jax.jit``, so the
three checks reuse one compiled program per shape. Every quantity is compared with
:mod:`verification.oracles.reference` (float64 NumPy, never the library) on the same inputs.

Round-off budget (per case and query row, ``u = eps(dtype)/2``; :func:`tolerances`):

* A logit ``l_j = (W^K x_j) . (W^Q x')`` is three nested dot products of lengths d, d, d_k, so
  its absolute error is at most ``delta = (2d + d_k + 2) u L`` with ``L = max_j (|W^Q||x'|) . (|W^K||x_j|)``
  (absolute values entrywise: the sum of absolute terms, where the conditioning lives).
* ``exp(l_j - max l)`` then carries a relative error ``<= 2 delta + u``, the normalisation adds
  ``(N + M) u``, and an output is a (sub-)convex combination of values with entrywise scale
  ``V = max_j |W^V||x_j|``: ``|error| <= (4 delta + (N + M + d + 8) u) V``, judged with a safety
  factor 2 (the float64 reference has the same kind of error, far smaller in float32 cases).
* ``log D'`` and ``log eta``: ``delta`` from the logits, ``(N + M + 4) u`` from the sum and its log,
  ``u`` times the magnitudes being added back (``max|l|`` and ``log(N+M)``):
  ``tau = 2 delta + (N + M + 4) u + 4 u (max|l| + log(N + M))``, judged against ``2 tau``.
  The entropy ``-sum p_j (l_j - log D')`` inherits ``tau`` per term, weighted by ``1 + H``: ``2 tau (1 + H)``.
* ``log ||W_0||_HS^2``: the double sum has relative error ``condition * (N^2 + 2d + d_v + 4) u`` with
  ``condition = sum_ij (|W^V||x_i|).(|W^V||x_j|) e^{k_i.k_j} / |sum_ij <v_i, v_j> e^{k_i.k_j}|`` (the
  cancellation inside the values ``v_i = W^V x_i`` included), plus twice the rounding of the
  exponents ``k_i . k_j`` (``(2d + d_k + 2) u K``, ``K = max_ij (|W^K||x_i|) . (|W^K||x_j|)``), plus
  ``2 tau`` from ``-2 log D'``, plus ``4 u`` times the magnitudes added in log space
  (``K + 2|log D'| + |log ||W_0||^2|``); safety factor 2.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import iclkd_jax as ik
from verification.cases.explore import explore
from verification.cases.strategies import CHUNK, AttentionBatch
from verification.core.model import case_quantiles
from verification.core.tolerances import eps, require_finite
from verification.oracles import reference

#: the shapes ``(d, d_k, d_v, N, M, Q)`` of the shared kernel-form program (one compilation per shape and
#: dtype, ~1 s each on one core): one demonstration and no context; d < d_k without context and with
#: d_v = d_k (keys and values swapped would otherwise fail on shapes, never on values); d > d_k with context
KERNEL_SHAPES = ((2, 2, 1, 1, 0, 2), (3, 4, 4, 16, 0, 3), (8, 4, 3, 16, 3, 2))


def _per_query(weights, demos, context, query, log_eta, log_eta_context):
    """The operator forms for one query token ``x'`` (vmapped over the query rows)."""
    z = (query @ weights.wq.T)[None, :]                                # q = W^Q x', the student's input phi(q)
    w0, dw = ik.attention_operators(weights, demos, context, query)
    out = {"op_w0": ik.apply_operator(w0, z)[0], "op_dw": ik.apply_operator(dw, z)[0],
           "op_sum": ik.apply_operator(ik.add_operators(w0, dw), z)[0],
           # Theorem 3.1(b): one KD step from 0 with eta = N/(2D') (and eta_Q = M/(2D') on the context)
           "step_w0": ik.apply_operator(ik.distilled_weights(weights, demos, log_eta=log_eta), z)[0]}
    if context.shape[0]:
        out["step_dw"] = ik.apply_operator(ik.distilled_weights(weights, context, log_eta=log_eta_context), z)[0]
    else:
        out["step_dw"] = jnp.zeros((weights.wv.shape[0],), weights.wv.dtype)
    hs = ik.hs_norm(w0)
    out["hs_log"], out["hs_condition"] = hs.log_value, hs.condition
    return out


def _example(wq, wk, wv, demos, context, queries):
    """One case through the library's public functions (traced under vmap)."""
    weights = ik.AttentionWeights(wq, wk, wv)
    dec = ik.kd_decomposition(weights, demos, context, queries)
    out = {"attention": ik.softmax_attention(weights, jnp.concatenate([demos, context]), queries),
           "w0_out": dec.w0_out, "dw_out": dec.dw_out, "log_partition": dec.log_partition,
           "log_eta": dec.log_eta, "log_eta_context": dec.log_eta_context, "entropy": dec.attention_entropy,
           "teacher": ik.teacher(weights, demos),
           # the lemma's standalone log D' over all N + M tokens
           "log_partition_direct": ik.log_partition(weights, jnp.concatenate([demos, context]), queries)}
    per_query = jax.vmap(_per_query, in_axes=(None, None, None, 0, 0, 0))(
        weights, demos, context, queries, dec.log_eta, dec.log_eta_context)
    out.update(per_query)
    # ||W_0||_HS^2 of the first query's operator (the others differ only by their 1/D' scale)
    out["hs_log"], out["hs_condition"] = per_query["hs_log"][0], per_query["hs_condition"][0]
    return out


_program = jax.jit(jax.vmap(_example))


def library_quantities(batch: AttentionBatch) -> dict[str, np.ndarray]:
    """The library's quantities for every case of ``batch``, as float64 NumPy (one compiled call)."""
    return {k: np.asarray(v, np.float64) for k, v in _program(*batch.device()).items()}


def reference_quantities(batch: AttentionBatch) -> dict[str, np.ndarray]:
    """The same quantities from :mod:`verification.oracles.reference` (vectorised over the batch)."""
    wq, wk, wv, demos, context, queries = batch.arrays
    split = reference.attention_split(wq, wk, wv, demos, context, queries)
    tokens = np.concatenate([demos, context], axis=1)
    n = demos.shape[1]
    hs_log, hs_condition = reference.hs_norm_squared(np.ones(demos.shape[:2]), demos @ np.swapaxes(wv, 1, 2),
                                                     demos @ np.swapaxes(wk, 1, 2), -split["log_partition"][:, 0])
    return {**split, "attention": reference.softmax_attention(wq, wk, wv, tokens, queries),
            "teacher": demos @ np.swapaxes(wv, 1, 2), "hs_log": hs_log, "hs_condition": hs_condition,
            "max_abs_logit": np.abs(split["logits"]).max(axis=(1, 2)), "n_demos": n}


def tolerances(batch: AttentionBatch, ref: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-case, per-query round-off budgets (see the module docstring): ``output (B, Q)``, ``log (B, Q)``,
    ``entropy (B, Q)``, ``hs (B,)``."""
    wq, wk, wv, demos, context, queries = (np.abs(a) for a in batch.arrays)
    d, dk = batch.shape[0], batch.shape[1]
    u = eps(batch.dtype) / 2
    tokens = np.concatenate([demos, context], axis=1)
    n_total = tokens.shape[1]
    abs_keys = tokens @ np.swapaxes(wk, 1, 2)
    abs_logits = (queries @ np.swapaxes(wq, 1, 2)) @ np.swapaxes(abs_keys, 1, 2)      # (B, Q, N+M)
    gamma = (2 * d + dk + 2) * u
    delta = gamma * abs_logits.max(axis=-1)
    value_scale = (tokens @ np.swapaxes(wv, 1, 2)).max(axis=(1, 2))
    output = 2 * (4 * delta + (n_total + d + 8) * u) * value_scale[:, None]
    lmax = np.abs(ref["logits"]).max(axis=-1)
    tau = 2 * delta + (n_total + 4) * u + 4 * u * (lmax + np.log(n_total))
    demo_keys = abs_keys[:, :demos.shape[1]]
    kabs = (demo_keys @ np.swapaxes(demo_keys, 1, 2)).max(axis=(1, 2))
    n = demos.shape[1]
    # condition of the double sum with the values' own cancellation included: sum_ij |v_i||v_j| e^{k_i.k_j}
    # over |sum_ij <v_i, v_j> e^{k_i.k_j}|, with |v_i| = |W^V||x_i| entrywise
    keys = batch.demos @ np.swapaxes(batch.wk, 1, 2)
    exponents = keys @ np.swapaxes(keys, 1, 2)
    shift = exponents.max(axis=(1, 2))
    abs_values = demos @ np.swapaxes(wv, 1, 2)
    absolute = np.sum((abs_values @ np.swapaxes(abs_values, 1, 2)) * np.exp(exponents - shift[:, None, None]),
                      axis=(1, 2))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        condition = absolute / np.exp(ref["hs_log"] + 2 * ref["log_partition"][:, 0] - shift)
        hs = 2 * (condition * (n * n + 2 * d + wv.shape[1] + 4) * u + 2 * gamma * kabs + 2 * tau[:, 0]
                  + 4 * u * (kabs + 2 * np.abs(ref["log_partition"][:, 0]) + np.abs(ref["hs_log"])))
    return {"output": output, "log": 2 * tau, "entropy": 2 * tau * (1 + ref["entropy"]), "hs": hs}


def fmt(value, spec: str = ".1e") -> str:
    """A figure for a summary; ``n/a`` where it was not measured (a sweep stopped at its first violation)."""
    return "n/a" if value is None else format(value, spec)


def error_ratio(got, want, tol, quantity: str = "library/reference value") -> np.ndarray:
    """``max |got - want| / tol`` per case and query row: ``(B, Q)`` from ``(B, Q, d_v)`` (or ``(B, Q)``).

    Both sides and the tolerance must be finite, unless both sides agree exactly (``-inf`` log eta when M = 0):
    otherwise :class:`~verification.core.errors.NonFiniteError` (status ``error``) names ``quantity`` and the case.
    """
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    require_finite({f"library {quantity}": np.where(got == want, 0.0, got),
                    f"reference {quantity}": np.where(got == want, 0.0, want), f"tolerance of {quantity}": tol})
    with np.errstate(invalid="ignore"):
        diff = np.where(got == want, 0.0, np.abs(got - want))
    if diff.ndim == 3:
        diff = diff.max(axis=-1)
    return diff / tol


# ----------------------------------------------------------------------------------------
# The batched sweep shared by the vectorised checks: random batches, then Hypothesis.
# ----------------------------------------------------------------------------------------

@dataclasses.dataclass
class Measured:
    """What a check measured on one batch: per-case ``ratio`` (error / tolerance, <= 1 holds), the query
    row it was attained at (``query``, or None), and per-case figures reduced by max per dtype."""

    ratio: np.ndarray
    query: np.ndarray | None = None
    figures: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    #: per case and query row ``(B, Q, ...)``: library outputs and the tolerance, recorded in ``worst_case``
    record: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def case_record(self, i: int) -> dict:
        """``record`` at case ``i`` and its worst query row: arrays as one-row lists ``(1, ...)``, scalars as floats."""
        q = int(self.query[i]) if self.query is not None else 0
        out = {}
        for name, values in self.record.items():
            value = np.asarray(values[i][q], np.float64)
            out[name] = float(value) if value.ndim == 0 else [value.tolist()]
        return out


@dataclasses.dataclass
class SweepResult:
    cases: int = 0
    random_cases: int = 0
    violations: int = 0
    worst: float = -np.inf
    worst_case: dict | None = None
    first_violation: dict | None = None
    counterexample: dict | None = None
    figures: dict[str, float] = dataclasses.field(default_factory=dict)
    elapsed_s: float = 0.0
    #: every case's error / tolerance, batch by batch (for :meth:`case_quantiles`)
    ratios: list[np.ndarray] = dataclasses.field(default_factory=list)

    def case_quantiles(self, measure: str = "error / tolerance") -> dict:
        """The distribution of the cases' error / tolerance (:func:`verification.core.model.case_quantiles`)."""
        return case_quantiles(np.concatenate(self.ratios) if self.ratios else np.zeros(0), measure, 1.0)

    def add(self, batch, measured: Measured, *, rows: int, describe: Callable[[int], dict]) -> None:
        ratio = measured.ratio[:rows]
        require_finite({"error ratio": ratio}, describe, allow_inf=True)
        self.ratios.append(np.asarray(ratio, np.float64))
        self.cases += rows
        bad = np.flatnonzero(ratio > 1.0)
        self.violations += bad.size
        i = int(np.argmax(ratio))
        if ratio[i] > self.worst or self.worst_case is None:
            self.worst = float(ratio[i])
            self.worst_case = describe(i)
        if bad.size and self.first_violation is None:
            self.first_violation = {**describe(int(bad[0])), "ratio": float(ratio[bad[0]])}
        for name, values in measured.figures.items():
            key = f"{name}_{batch.dtype}"
            finite = np.asarray(values[:rows], np.float64)
            self.figures[key] = max(self.figures.get(key, -np.inf), float(np.max(finite)))

    @property
    def cases_per_second(self) -> float:
        return self.cases / self.elapsed_s if self.elapsed_s > 0 else float("nan")


def chunks_per_config(profile) -> int:
    """Batches of ``CHUNK`` cases per (shape, dtype): 1 (smoke), 2 (quick), 7 (default: 6 configs x 7 x 256
    = 10752 cases), 34 (thorough)."""
    return max(1, -(-profile.examples // 6))


def sweep(ctx, configs: Sequence, draw: Callable, measure: Callable, strategy, tile: Callable,
          describe: Callable, *, examples: int | None = None) -> SweepResult:
    """Random batches for every config (``draw(key, config) -> batch``), then Hypothesis cases.

    ``measure(batch) -> Measured``; ``tile(case) -> batch`` evaluates one Hypothesis case through the
    same compiled program; ``describe(batch, i, measured) -> dict`` gives the exact inputs of case ``i``.
    A Hypothesis case with ratio > 1 is shrunk to a minimal one (the counterexample). The random
    batches stop after the first config with a violation (the verdict is then settled).
    """
    start = time.perf_counter()
    out = SweepResult()
    chunks = chunks_per_config(ctx.profile)
    for c, config in enumerate(configs):
        for j in range(chunks):
            batch = draw(jax.random.fold_in(ctx.key, c * 4096 + j), config)
            measured = measure(batch)
            out.add(batch, measured, rows=CHUNK, describe=lambda i, b=batch, m=measured: describe(b, i, m))
        if out.violations:  # the verdict is settled; Hypothesis looks for a minimal counterexample
            break
    out.random_cases = out.cases

    def one(case):
        batch = tile(case)
        measured = measure(batch)
        out.add(batch, measured, rows=1, describe=lambda i, b=batch, m=measured: describe(b, i, m))
        return float(measured.ratio[0])

    exploration = explore(strategy, one, max_examples=examples or ctx.profile.examples, seed_value=ctx.hypothesis_seed,
                          fails=lambda r: not r <= 1.0, shrink=ctx.shrink)
    if exploration.counterexample is not None:
        case, ratio = exploration.counterexample
        out.counterexample = {"case": case.describe(), "ratio": ratio}
    elif out.first_violation is not None:
        out.counterexample = out.first_violation
    out.elapsed_s = time.perf_counter() - start
    return out
