"""lemma-eta: the learning-rate proxy eta = N/(2D') in log space (THEOREMS.md, "Lemma — learning-rate proxy").

Statement: ``eta = N/(2D')``, ``eta_Q = M/(2D')``, ``log D' = logsumexp(logits)`` over the
``N + M`` logits; flat attention (all logits equal to c) gives ``log D' = c + log(N+M)``
and entropy ``log(N+M)``; sharp attention (one logit ahead by a gap g) has entropy
``<= (N+M−1)(1+g) e^{−g} -> 0``.

Measured: the library's ``log_partition``, ``log_eta``, ``log_eta_context`` and
``attention_entropy`` (from :func:`iclkd_jax.kd_decomposition`) against an independent
Python reference on the same (dtype-rounded) logits: ``max + log(math.fsum(exp(l − max)))``
and ``H = −fsum(p_j (l_j − log D'))``. Logits are exact by construction (``W^Q = W^K = I``,
query ``e_1`` or ``e_2``, so a logit is one token coordinate). Patterns: Gaussian around a
centre (spread up to 1e3), flat, sharp; centres in ``[−1e3, 1e3]`` where a naive
``exp`` overflows (> 709) or underflows (< −745) in float64. Fixed anchor cases
(flat at ±1e3, sharp by 800, spread 1e3, and a gap sweep) always run before the search.

Tolerance (absolute, in log space = relative for eta): ``log D'`` inherits an absolute
round-off of ``eps |l|`` from each shifted logit, plus ``eps log(N+M)`` from the log of
the sum: ``16 eps (1 + max|l| + log(N+M))``; the entropy is a p-weighted mean of the same
shifted logits: the same budget times ``1 + log(N+M)``. A non-finite output is an
infinite error.
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
from verification.strategies import standard_normal_pool
from verification.tolerances import eps

#: (N, M): M > 0 so that a partition function over the demonstrations only is wrong in every case
_SIZES = ((4, 3), (16, 5))
_GAP_SWEEP = (0.0, 2.0, 10.0, 50.0, 200.0, 800.0)


@dataclasses.dataclass(frozen=True)
class LogitCase:
    seed: int
    pattern: str        # "gaussian" | "flat" | "sharp"
    sizes: tuple[int, int]
    centre: float
    spread: float       # Gaussian spread, or the gap of the sharp pattern
    dtype: str = "float64"

    def logits(self) -> np.ndarray:
        """Two rows of ``N + M`` logits (one per query), rounded to the case's dtype."""
        n = sum(self.sizes)
        noise = standard_normal_pool(self.seed, 2 * n).reshape(2, n)
        if self.pattern == "flat":
            rows = np.full((2, n), self.centre)
        elif self.pattern == "sharp":
            rows = np.full((2, n), self.centre)
            rows[0, int(abs(noise[0, 0]) * 7) % n] += self.spread
            rows[1, int(abs(noise[1, 0]) * 7) % n] += self.spread
        else:
            rows = self.centre + self.spread * noise
        return rows.astype(self.dtype).astype(np.float64)

    def build(self):
        logits = self.logits()
        dtype = np.dtype(self.dtype)
        eye = jax.device_put(np.eye(2, dtype=dtype))
        weights = ik.AttentionWeights(eye, eye, jax.device_put(np.array([[1.0, 0.5]], dtype)))
        tokens = logits.T.astype(dtype)                      # token j = (logit for e_1, logit for e_2)
        n = self.sizes[0]
        return weights, jax.device_put(tokens[:n]), jax.device_put(tokens[n:]), eye, logits

    def describe(self) -> dict:
        return dataclasses.asdict(self)


def logit_cases() -> st.SearchStrategy[LogitCase]:
    return st.builds(LogitCase, st.integers(0, 2**31 - 1), st.sampled_from(("gaussian", "flat", "sharp")),
                     st.sampled_from(_SIZES), st.floats(-1e3, 1e3), st.floats(0.0, 1e3),
                     st.sampled_from(("float64", "float32")))


def _anchors() -> list[LogitCase]:
    fixed = [LogitCase(1, "flat", (4, 3), 1e3, 0.0), LogitCase(2, "flat", (16, 5), -1e3, 0.0),
             LogitCase(3, "sharp", (4, 3), 0.0, 800.0), LogitCase(4, "gaussian", (16, 5), 0.0, 1e3),
             LogitCase(5, "flat", (4, 3), 1e3, 0.0, "float32"), LogitCase(6, "gaussian", (4, 3), 500.0, 300.0)]
    return fixed + [LogitCase(7, "sharp", (16, 5), -500.0, gap) for gap in _GAP_SWEEP]


def _reference(row: np.ndarray, n_demos: int, n_context: int):
    """Python ``math.fsum`` reference: (log D', log eta, log eta_Q, entropy)."""
    values = [float(x) for x in row]
    top = max(values)
    log_d = top + math.log(math.fsum(math.exp(x - top) for x in values))
    entropy = -math.fsum(math.exp(x - log_d) * (x - log_d) for x in values)
    log_eta_q = math.log(n_context) - math.log(2.0) - log_d if n_context else -math.inf
    return log_d, math.log(n_demos) - math.log(2.0) - log_d, log_eta_q, entropy


def proxies_under_test(weights, demos, context, queries, mutant):
    """The library's (log D', log eta, log eta_Q, entropy) per query, with a mutant applied where asked."""
    dec = ik.kd_decomposition(weights, demos, context, queries)
    log_d, log_eta, log_eta_q, entropy = (np.asarray(a, np.float64) for a in
                                          (dec.log_partition, dec.log_eta, dec.log_eta_context, dec.attention_entropy))
    n, m = demos.shape[0], context.shape[0]
    if mutant == "naive-logsumexp":
        logits = queries @ jnp.concatenate([demos, context]).T
        log_d = np.asarray(jnp.log(jnp.sum(jnp.exp(logits), axis=-1)), np.float64)
        log_eta, log_eta_q = math.log(n / 2) - log_d, math.log(m / 2) - log_d
    elif mutant == "eta-missing-half":
        log_eta = log_eta + math.log(2.0)
    elif mutant == "demo-only-partition":
        log_d = np.asarray(ik.kd_decomposition(weights, demos, None, queries).log_partition, np.float64)
        log_eta = math.log(n / 2) - log_d
    elif mutant == "entropy-base-2":
        entropy = entropy / math.log(2.0)
    return log_d, log_eta, log_eta_q, entropy


def _abs_error(value, reference):
    if not np.isfinite(value):
        return 0.0 if value == reference else math.inf
    return abs(value - reference)


@register
class LemmaEta(Check):
    id = "lemma-eta"
    kind = "lemma"
    title = "eta = N/(2D') with log D' = logsumexp(logits) in log space; flat/sharp attention entropy"
    mutants = {
        "naive-logsumexp": "log D' = log(sum(exp(logits))): overflows to inf / underflows to -inf past |logit| ~ 709",
        "eta-missing-half": "eta = N/D' (the 1/2 dropped)",
        "demo-only-partition": "D' summed over the demonstrations only",
        "entropy-base-2": "the attention entropy in bits instead of nats",
    }

    def run(self, ctx: RunContext):
        def measure(case: LogitCase):
            weights, demos, context, queries, logits = case.build()
            n, m = case.sizes
            got = proxies_under_test(weights, demos, context, queries, ctx.mutant)
            ratio, errors = 0.0, {"err_log_partition": 0.0, "err_log_eta": 0.0, "err_entropy": 0.0}
            entropies, log_etas = [], []
            for row in range(2):
                ref = _reference(logits[row], n, m)
                tol = 16 * eps(case.dtype) * (1 + np.abs(logits[row]).max() + math.log(n + m))
                for name, k, scale in (("log_partition", 0, 1.0), ("log_eta", 1, 1.0), ("log_eta", 2, 1.0),
                                       ("entropy", 3, 1 + math.log(n + m))):
                    err = _abs_error(float(got[k][row]), ref[k])
                    errors["err_" + name] = max(errors["err_" + name], err)
                    ratio = max(ratio, err / (tol * scale))
                entropies.append(float(got[3][row]))
                log_etas.append(float(got[1][row]))
                if case.pattern == "flat":  # exactly log(N+M), whatever the centre
                    ratio = max(ratio, abs(float(got[3][row]) - math.log(n + m)) / (tol * (1 + math.log(n + m))),
                                _abs_error(float(got[0][row]), case.centre + math.log(n + m)) / tol)
            return {"dtype": case.dtype, "pattern": case.pattern, "ratio": float(ratio), **errors,
                    "entropy": entropies, "log_eta": log_etas, "max_abs_logit": float(np.abs(logits).max())}

        anchors = _anchors()
        anchor_ms = [measure(c) for c in anchors]
        # sharp attention: the entropy decreases along the gap sweep and vanishes
        sweep = [m["entropy"][0] for c, m in zip(anchors, anchor_ms) if c.seed == 7]
        sweep_ok = all(b <= a + 1e-12 for a, b in zip(sweep, sweep[1:])) and sweep[-1] <= 1e-300 \
            and abs(sweep[0] - math.log(21)) < 1e-12
        failing_anchor = next(((c, m) for c, m in zip(anchors, anchor_ms) if m["ratio"] > 1.0), None)
        examples = 0 if failing_anchor else ctx.profile.examples * 2
        exploration = explore(logit_cases(), measure, max_examples=max(examples, 1), seed_value=ctx.hypothesis_seed,
                              fails=lambda m: m["ratio"] > 1.0, shrink=ctx.shrink and not failing_anchor) \
            if examples else None
        ms = anchor_ms + (exploration.measurements if exploration else [])
        counterexample = None
        if failing_anchor or (exploration and exploration.counterexample):
            case, m = failing_anchor or exploration.counterexample
            counterexample = {"case": case.describe(), **{k: v for k, v in m.items()}}
        elif not sweep_ok:
            counterexample = {"gap_sweep": list(_GAP_SWEEP), "entropy": sweep}
        worst = max(m["ratio"] for m in ms)
        all_log_eta = [x for m in ms for x in m["log_eta"] if np.isfinite(x)]
        all_entropy = [x for m in ms for x in m["entropy"] if np.isfinite(x)]
        figures = {"max_abs_error_log_partition": max(m["err_log_partition"] for m in ms),
                   "max_abs_error_log_eta": max(m["err_log_eta"] for m in ms),
                   "max_abs_error_entropy": max(m["err_entropy"] for m in ms),
                   "max_abs_logit": max(m["max_abs_logit"] for m in ms),
                   "log10_eta_range": [min(all_log_eta) / math.log(10), max(all_log_eta) / math.log(10)],
                   "entropy_range_nats": [min(all_entropy), max(all_entropy)],
                   "sharp_gap_sweep": {"gap": list(_GAP_SWEEP), "entropy": sweep, "N+M": 21}}
        return self.result(
            ctx, status="violated" if counterexample else "holds", cases=len(ms), worst=worst,
            worst_label="max abs log-space error/tolerance", tolerance=1.0,
            tolerance_reason="16 eps (1 + max|logit| + log(N+M)) absolute in log D' and log eta (entropy: times "
                             "1 + log(N+M)): the round-off of the shifted logits, per dtype",
            figures=figures, counterexample=counterexample,
            summary=(f"log D' and log eta exact to {figures['max_abs_error_log_eta']:.1e} (abs) for |logit| up to "
                     f"{figures['max_abs_logit']:.0f}; eta spans 1e{figures['log10_eta_range'][0]:.0f}.."
                     f"1e{figures['log10_eta_range'][1]:.0f}; entropy {figures['entropy_range_nats'][0]:.2g}.."
                     f"{figures['entropy_range_nats'][1]:.3g} nats; sharp gap 800 -> entropy {sweep[-1]:.1e}"))
