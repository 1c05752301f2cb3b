"""lemma-eta: the learning-rate proxy eta = N/(2D') in log space (docs/statements.md#lemma-eta, "Lemma — learning-rate proxy").

Statement: ``eta = N/(2D')``, ``eta_Q = M/(2D')``, ``log D' = logsumexp(logits)`` over the
``N + M`` logits; flat attention (all logits equal to c) gives ``log D' = c + log(N+M)``
and entropy ``log(N+M)``; sharp attention (one logit ahead by a gap g) has entropy
``<= (N+M−1)(1+g) e^{−g} -> 0``.

Measured: the library's ``log_partition``, ``log_eta``, ``log_eta_context`` and
``attention_entropy`` (:func:`iclkd_jax.kd_decomposition`, the compiled program shared with
thm-3.1a/b), and the standalone :func:`iclkd_jax.log_partition` over all ``N + M`` tokens,
against :mod:`verification.oracles.reference` in extended precision (``np.longdouble``) on the same
(dtype-rounded) logits, two-sided; ``log eta_Q = -inf`` exactly when M = 0.
Logits are exact by construction (``W^Q = W^K = [I_2 0; 0 0]``, query tokens ``e_1, e_2``, so a
logit is one token coordinate). Vectorised: ``CHUNK`` cases per compiled call for each shape of
``attention_batch.KERNEL_SHAPES`` and both dtypes, patterns (per case, from ``RunContext.key``):
Gaussian around a centre (spread log-uniform up to 1e3), flat, sharp (gap up to 1e3); centres
uniform in ``[−1e3, 1e3]``, where a naive ``exp`` overflows (> 709) or underflows (< −745) in
float64. Then fixed anchors (flat at ±1e3, a sharp gap sweep 0..800 whose entropy must decrease
to 0 and start at log(N+M)), then Hypothesis cases through the same programs, shrunk on failure.

Tolerance (absolute, in log space = relative for eta): ``log D'`` inherits an absolute round-off
of ``eps |l|`` from each shifted logit, plus ``eps log(N+M)`` from the log of the sum:
``16 eps (1 + max|l| + log(N+M))``; the entropy is a p-weighted mean of the same shifted logits:
the same budget times ``1 + log(N+M)``. A non-finite output where the reference is finite is an
infinite error.

``worst_case`` (keys of :mod:`verification.statements.lemma_eta.certificate`): ``logits (R, N+M)`` (one row per query of
the worst case, exact), ``n_demos``, ``n_context``, the library's ``log_partition``, ``log_eta``,
``log_eta_context`` (``-inf`` recorded as ``-inf``) and ``entropy`` (R,), and ``eps`` (the unit
round-off of the dtype the library ran in); plus the attention inputs ``wq, wk, wv, demos, context,
queries`` and ``dtype_bits``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time

import jax
import numpy as np
from hypothesis import strategies as st

from verification.cases.attention_batch import KERNEL_SHAPES, Measured, fmt, library_quantities, sweep
from verification.cases.strategies import CHUNK, AttentionBatch, standard_normal_pool
from verification.core.model import Check, RunContext
from verification.core.tolerances import eps, require_finite
from verification.oracles import reference

DTYPES = ("float64", "float32")
PATTERNS = ("gaussian", "flat", "sharp")
GAP_SWEEP = (0.0, 2.0, 10.0, 50.0, 200.0, 800.0)
_SWEEP_SHAPE = (8, 4, 3, 16, 3, 2)


def logit_batch(logits: np.ndarray, shape, dtype: str) -> AttentionBatch:
    """Attention inputs whose logits are exactly ``logits (B, Q, N+M)`` (rounded to ``dtype``).

    ``W^Q = W^K = [I_2 0; 0 0]`` (d_k x d), query tokens ``e_1, e_2, e_1, ...``, token j carries
    (row 1 logit, row 2 logit, 0, ...): every product and sum in a logit is exact.
    """
    d, dk, dv, n, m, q = shape
    b = logits.shape[0]
    logits = logits.astype(dtype).astype(np.float64)
    select = np.zeros((dk, d))
    select[0, 0] = select[1, 1] = 1.0
    tokens = np.zeros((b, n + m, d))
    tokens[:, :, 0], tokens[:, :, 1] = logits[:, 0], logits[:, 1]
    queries = np.zeros((b, q, d))
    queries[:, np.arange(q), np.arange(q) % 2] = 1.0
    wv = np.broadcast_to(np.linspace(1.0, 0.5, dv * d).reshape(dv, d), (b, dv, d))
    weights = [np.broadcast_to(select, (b, dk, d)), np.broadcast_to(select, (b, dk, d)), wv]
    return AttentionBatch(tuple(shape), dtype, *weights, tokens[:, :n], tokens[:, n:], queries, scale=np.ones(b))


def batch_logits(batch: AttentionBatch) -> np.ndarray:
    """The exact logits ``(B, Q, N+M)`` of a :func:`logit_batch` (query row a reads coordinate a mod 2)."""
    tokens = np.concatenate([batch.demos, batch.context], axis=1)
    q = batch.queries.shape[1]
    return np.stack([tokens[:, :, a % 2] for a in range(q)], axis=1)


@jax.jit
def _pattern_draw(key):
    keys = jax.random.split(key, 4)
    return (jax.random.randint(keys[0], (CHUNK,), 0, 3), jax.random.uniform(keys[1], (CHUNK,), minval=-1e3, maxval=1e3),
            jax.random.uniform(keys[2], (CHUNK,), minval=-3.0, maxval=3.0),
            jax.random.normal(keys[3], (CHUNK, 2, 32)))


def draw_logit_batch(key, shape, dtype: str) -> AttentionBatch:
    """``CHUNK`` logit patterns: Gaussian (centre + spread * N(0,1)), flat, sharp (one entry + gap); spreads
    and gaps log-uniform in ``[1e-3, 1e3]``, centres uniform in ``[-1e3, 1e3]``."""
    n_total = shape[3] + shape[4]
    pattern, centre, log_spread, noise = (np.asarray(a, np.float64) for a in _pattern_draw(key))
    spread = 10.0 ** log_spread
    rows = np.repeat(centre[:, None, None], 2, axis=1) + np.zeros((CHUNK, 2, n_total))
    gaussian = pattern == 0
    rows[gaussian] += spread[gaussian, None, None] * noise[gaussian, :, :n_total]
    sharp = np.flatnonzero(pattern == 2)
    top = (np.abs(noise[sharp, :, -1]) * 7).astype(int) % n_total        # (S, 2) which entry leads
    for r in range(2):
        rows[sharp, r, top[:, r]] += spread[sharp]
    logits = np.stack([rows[:, a % 2] for a in range(shape[5])], axis=1)
    return logit_batch(logits, shape, dtype)


def proxies_under_test(batch: AttentionBatch, mutant: str | None) -> dict[str, np.ndarray]:
    """The library's (log D', log eta, log eta_Q, entropy) per case and query, with a mutant applied."""
    lib = library_quantities(batch)
    out = {k: lib[k] for k in ("log_partition", "log_eta", "log_eta_context", "entropy", "log_partition_direct")}
    n, m = batch.demos.shape[1], batch.context.shape[1]
    logits = batch_logits(batch)
    if mutant == "naive-logsumexp":
        with np.errstate(over="ignore", divide="ignore"):
            naive = np.log(np.sum(np.exp(logits.astype(batch.dtype)), axis=-1)).astype(np.float64)
        out["log_partition"] = out["log_partition_direct"] = naive
        out["log_eta"] = math.log(n / 2) - naive
        out["log_eta_context"] = (math.log(m / 2) - naive) if m else out["log_eta_context"]
    elif mutant == "eta-missing-half":
        out["log_eta"] = out["log_eta"] + math.log(2.0)
    elif mutant == "demo-only-partition":
        out["log_partition"] = reference.logsumexp(logits[..., :n])
        out["log_eta"] = math.log(n / 2) - out["log_partition"]
    elif mutant == "entropy-base-2":
        out["entropy"] = out["entropy"] / math.log(2.0)
    return out


def _abs_error(got: np.ndarray, want: np.ndarray, quantity: str) -> np.ndarray:
    """``|got - want|``, 0 where both agree exactly (``-inf`` log eta when M = 0); a NaN or an infinity on one side
    only is status ``error`` naming ``quantity``."""
    require_finite({f"library {quantity}": np.where(got == want, 0.0, got),
                    f"reference {quantity}": np.where(got == want, 0.0, want)})
    with np.errstate(invalid="ignore"):
        return np.where(got == want, 0.0, np.abs(got - want))


def measure(batch: AttentionBatch, mutant: str | None) -> Measured:
    got = proxies_under_test(batch, mutant)
    logits = batch_logits(batch)
    n, m = batch.demos.shape[1], batch.context.shape[1]
    log_d = reference.logsumexp(logits, extended=True)
    want = {"log_partition": log_d.astype(np.float64),
            "log_eta": (np.log(np.longdouble(n) / 2) - log_d).astype(np.float64),
            "log_eta_context": ((np.log(np.longdouble(m) / 2) - log_d).astype(np.float64) if m
                                else np.full(log_d.shape, -np.inf)),
            "entropy": reference.attention_entropy(logits).astype(np.float64)}
    tol = 16 * eps(batch.dtype) * (1 + np.abs(logits).max(axis=-1) + math.log(n + m))
    errors = {k: _abs_error(got[k], want[k], k) for k in want}
    errors["log_partition"] = np.maximum(errors["log_partition"],
                                         _abs_error(got["log_partition_direct"], want["log_partition"], "log_partition (direct)"))
    per_query = np.max([errors["log_partition"] / tol, errors["log_eta"] / tol, errors["log_eta_context"] / tol,
                        errors["entropy"] / (tol * (1 + math.log(n + m)))], axis=0)        # (B, Q)
    finite = np.where(np.isfinite(got["log_eta"]), got["log_eta"], np.nan)
    return Measured(per_query.max(axis=1), None,
                    {"max_abs_error_log_partition": errors["log_partition"].max(axis=1),
                     "max_abs_error_log_eta": np.maximum(errors["log_eta"], np.where(
                         np.isfinite(errors["log_eta_context"]), errors["log_eta_context"], 0)).max(axis=1),
                     "max_abs_error_entropy": errors["entropy"].max(axis=1),
                     "max_abs_logit": np.abs(logits).max(axis=(1, 2)),
                     "max_log10_eta": np.max(np.where(np.isnan(finite), -np.inf, finite), axis=1) / math.log(10),
                     "max_minus_log10_eta": -np.min(np.where(np.isnan(finite), np.inf, finite), axis=1) / math.log(10),
                     "max_entropy": got["entropy"].max(axis=1), "max_minus_entropy": -got["entropy"].min(axis=1)},
                    record={k: v[:, None] for k, v in got.items() if k != "log_partition_direct"})


def describe(batch: AttentionBatch, i: int, measured: Measured) -> dict:
    logits = batch_logits(batch)[i]
    out = {"logits": logits.tolist(), "n_demos": float(batch.demos.shape[1]), "n_context": float(batch.context.shape[1]),
           "eps": eps(batch.dtype)}
    for name, values in measured.record.items():
        out[name] = np.asarray(values[i][0], np.float64).tolist()
    inputs = batch.case(i)
    return {**inputs, **out}


@dataclasses.dataclass(frozen=True)
class LogitCase:
    """A Hypothesis case: one logit pattern, evaluated through the compiled batch program by tiling."""

    seed: int
    pattern: str
    shape: tuple[int, ...]
    centre: float
    spread: float
    dtype: str = "float64"

    def logits(self) -> np.ndarray:
        n_total, q = self.shape[3] + self.shape[4], self.shape[5]
        noise = standard_normal_pool(self.seed, 2 * n_total).reshape(2, n_total)
        rows = np.full((2, n_total), self.centre)
        if self.pattern == "gaussian":
            rows = rows + self.spread * noise
        elif self.pattern == "sharp":
            for r in range(2):
                rows[r, int(abs(noise[r, 0]) * 7) % n_total] += self.spread
        return np.stack([rows[a % 2] for a in range(q)])

    def describe(self) -> dict:
        return dataclasses.asdict(self)


def tile(case: LogitCase) -> AttentionBatch:
    return logit_batch(np.broadcast_to(case.logits(), (CHUNK,) + case.logits().shape).copy(), case.shape, case.dtype)


def logit_cases() -> st.SearchStrategy[LogitCase]:
    return st.builds(LogitCase, st.integers(0, 2**31 - 1), st.sampled_from(PATTERNS), st.sampled_from(KERNEL_SHAPES),
                     st.floats(-1e3, 1e3), st.floats(0.0, 1e3), st.sampled_from(DTYPES))


def anchors() -> list[LogitCase]:
    """Flat at ±1e3, sharp by 800 at -500 and the gap sweep (entropy log(N+M) at gap 0, -> 0 at 800)."""
    fixed = [LogitCase(1, "flat", _SWEEP_SHAPE, 1e3, 0.0), LogitCase(2, "flat", _SWEEP_SHAPE, -1e3, 0.0),
             LogitCase(5, "flat", _SWEEP_SHAPE, 1e3, 0.0, "float32"), LogitCase(4, "gaussian", _SWEEP_SHAPE, 0.0, 1e3)]
    return fixed + [LogitCase(7, "sharp", _SWEEP_SHAPE, -500.0, gap) for gap in GAP_SWEEP]


class LemmaEta(Check):
    id = "lemma-eta"
    kind = "lemma"
    order = 312  # its place in the report: docs/statements.md order
    title = "eta = N/(2D') with log D' = logsumexp(logits) in log space; flat/sharp attention entropy"
    mutants = {
        "naive-logsumexp": "log D' = log(sum(exp(logits))): overflows to inf / underflows to -inf past |logit| ~ 709",
        "eta-missing-half": "eta = N/D' (the 1/2 dropped)",
        "demo-only-partition": "D' summed over the demonstrations only",
        "entropy-base-2": "the attention entropy in bits instead of nats",
    }

    def run(self, ctx: RunContext):
        start = time.perf_counter()
        # the anchors first, in one tiled batch per dtype (flat: exact closed forms; the sharp gap sweep)
        anchor_ratio, sweep_entropy, anchor_failure = 0.0, [], None
        for dtype in DTYPES:
            cases = [c for c in anchors() if c.dtype == dtype]
            logits = np.stack([c.logits() for c in cases])
            batch = logit_batch(np.concatenate([logits, np.repeat(logits[-1:], CHUNK - len(cases), 0)]),
                                _SWEEP_SHAPE, dtype)
            m = measure(batch, ctx.mutant)
            got = proxies_under_test(batch, ctx.mutant)
            for i, c in enumerate(cases):
                n_total = _SWEEP_SHAPE[3] + _SWEEP_SHAPE[4]
                ratio = float(m.ratio[i])
                if c.pattern == "flat":  # closed forms, whatever the centre: log D' = c + log(N+M), H = log(N+M)
                    tol = 16 * eps(dtype) * (1 + abs(c.centre) + math.log(n_total))
                    ratio = max(ratio, float(np.max(np.abs(got["log_partition"][i] - c.centre - math.log(n_total)))) / tol,
                                float(np.max(np.abs(got["entropy"][i] - math.log(n_total)))) / (tol * (1 + math.log(n_total))))
                if c.pattern == "sharp":
                    sweep_entropy.append(float(got["entropy"][i, 0]))
                anchor_ratio = max(anchor_ratio, ratio)
                if not ratio <= 1 and anchor_failure is None:
                    anchor_failure = {"anchor": c.describe(), "ratio": ratio}
        n_total = _SWEEP_SHAPE[3] + _SWEEP_SHAPE[4]
        sweep_ok = (all(b <= a + 1e-12 for a, b in itertools.pairwise(sweep_entropy))
                    and sweep_entropy[-1] <= 1e-300 and abs(sweep_entropy[0] - math.log(n_total)) < 1e-12)
        if anchor_failure is None and not sweep_ok:
            anchor_failure = {"gap_sweep": list(GAP_SWEEP), "entropy": sweep_entropy}
        configs = [(shape, dtype) for dtype in DTYPES for shape in KERNEL_SHAPES]
        result = sweep(ctx, configs, draw=lambda key, config: draw_logit_batch(key, *config),
                       measure=lambda batch: measure(batch, ctx.mutant), strategy=logit_cases(), tile=tile,
                       describe=describe)
        f = result.figures

        def both(name):
            return max(f.get(f"{name}_float64", -np.inf), f.get(f"{name}_float32", -np.inf))

        cases = result.cases + len(anchors())
        figures = {"max_abs_error_log_partition": both("max_abs_error_log_partition"),
                   "max_abs_error_log_eta": both("max_abs_error_log_eta"),
                   "max_abs_error_entropy": both("max_abs_error_entropy"),
                   "max_abs_error_log_eta_float64": f.get("max_abs_error_log_eta_float64"),
                   "max_abs_logit": both("max_abs_logit"),
                   "log10_eta_range": [-both("max_minus_log10_eta"), both("max_log10_eta")],
                   "entropy_range_nats": [-both("max_minus_entropy"), both("max_entropy")],
                   "sharp_gap_sweep": {"gap": list(GAP_SWEEP), "entropy": sweep_entropy, "N+M": n_total},
                   "per_case_quantiles": result.case_quantiles("log-space error / tolerance"),
                   "random_cases": result.random_cases, "violations": result.violations,
                   "cases_per_second": cases / (time.perf_counter() - start)}
        counterexample = anchor_failure or result.counterexample
        violated = anchor_failure is not None or result.violations or result.counterexample is not None
        return self.result(
            ctx, status="violated" if violated else "holds", cases=cases, worst=max(result.worst, anchor_ratio),
            worst_label="max abs log-space error/tolerance", tolerance=1.0,
            tolerance_reason="16 eps (1 + max|logit| + log(N+M)) absolute in log D' and log eta (entropy: times "
                             "1 + log(N+M)) against an extended-precision reference: the round-off of the shifted "
                             "logits, per dtype",
            figures=figures, counterexample=counterexample, worst_case=result.worst_case,
            summary=(f"{cases} cases: log D' and log eta = reference to "
                     f"{fmt(figures['max_abs_error_log_eta'])} (abs) for |logit| up to "
                     f"{figures['max_abs_logit']:.0f}; eta spans 1e{figures['log10_eta_range'][0]:.0f}.."
                     f"1e{figures['log10_eta_range'][1]:.0f}; entropy {figures['entropy_range_nats'][0]:.2g}.."
                     f"{figures['entropy_range_nats'][1]:.3g} nats; sharp gap 800 -> entropy {sweep_entropy[-1]:.1e}"))
