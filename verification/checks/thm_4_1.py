"""thm-4.1: ||ΔW||_HS <= 2 eta ||W^V||_op MMD_k(𝒟, 𝒬) (THEOREMS.md, Theorem 4.1).

Statement: with ``W̄(P) = 2 eta E_P[W^V x ⊗ phi(W^K x)]`` and ``ΔW = W̄(𝒬) - W̄(𝒟)``,

    ||ΔW||_HS <= 2 eta ||W^V||_op MMD_k(𝒟, 𝒬),   k(x, x') = (x . x') exp((W^K x) . (W^K x')),

with the biased (V-statistic) MMD; exact for empirical measures, with equality when
``W^V^T W^V = ||W^V||_op^2 I`` on the span of the tokens.

Cases: batches of one shape drawn with ``jax.random`` from ``ctx.key``
(:func:`verification.shift_cases.draw_shift_batches`: logits ``||W^K x||^2`` up to a few hundred,
``log eta`` in [-5, 5]), each with its attained counterpart (isometric W^V on the tokens' span);
the library evaluated under ``jax.vmap`` (one compiled program per shape), the float64 reference
(:mod:`verification.reference`) batched in NumPy. Then Hypothesis over the same construction
(edge cases, shrinking to a minimal failing case).

Judged per case (each a violation of this check):

1. the library agrees with the reference: ``||ΔW||^2`` (``distilled_weight_difference`` + ``hs_norm``
   against the explicit double sum), ``MMD_k^2`` by ``mmd2`` dense, blocked (``block_size=3``, on a few cases) and
   unbiased (against the reference U-statistic), ``ik.operator_norm`` against the reference SVD (on
   the first 64 cases of each batch: it is host-side; the bounds use the reference's ``||W^V||_op``);
2. the bound, from the library's values: ``ratio = ||ΔW|| / (2 eta ||W^V||_op MMD_k) <= 1``;
3. attained, two-sided: ``|ratio - 1|`` within tolerance for the isometric W^V (a ΔW at half its size
   gives 0.5 and is a violation);
4. ``MMD_k~ <= 2`` for ``k~ = k / (M_x M_phi)^2`` with ``M_x = max ||x||``, ``M_phi = max exp(||W^K x||^2/2)``
   over both samples: ``k~ <= 1`` there (Cauchy-Schwarz). (The paper's normalised form of the bound is
   the same inequality, since the normalisers cancel; it is not judged twice.)

Linear growth, judged per draw on coupled shift families (𝒬_t = 𝒟 + t u, and 𝒬_t = mean + (1+t)(𝒟 -
mean)) at ``t = T0 2^k``, k = 0..3: the growth exponent of ``||ΔW||`` and of ``MMD`` at ``t -> 0``
(Richardson-extrapolated ``log2`` ratios, ``2 p(t) - p(2t)``) must be 1 within ``EXPONENT_TOLERANCE``
(the remaining bias is O(t^2) ~ 1e-6 here), the extrapolated slope ``lim ||ΔW||/t`` at most the bound's
``lim 2 eta ||W^V|| MMD / t``, and equal to it for the isometric W^V (two-sided). Mean slope ratios
and exponents are reported with 95 % t-intervals over the draws.

Tolerance: ``||ΔW||^2`` and ``MMD^2`` are double sums of at most 169 terms whose logits carry a relative
error of a few eps each: library and reference must agree within
``64 eps (1 + max logit) sum|terms|`` (:func:`verification.shift_cases.agreement`); the ratio within
``64 eps (cond_HS + cond_MMD + 1)(1 + max logit)`` with the reference's conditions; ``||W^V||_op``
within ``64 eps ||W^V||_op`` (SVD is backward stable).

``worst_case`` (for ``--certify``): the random-W^V case with the largest ratio, keys ``wk (d_k, d)``,
``wv (d_v, d)``, ``target (m, d)`` (𝒟), ``prompt (n, d)`` (𝒬), ``log_eta``; the statement to certify is
``||ΔW||_HS <= 2 exp(log_eta) ||wv||_op MMD_k(target, prompt)`` with the biased MMD.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import iclkd_jax as ik
from verification import reference as ref
from verification.registry import Check, RunContext, case_quantiles, register
from verification.search import explore
from verification.shift_cases import (
    OPERATIONS,
    SHAPES,
    ShiftBatch,
    ShiftCase,
    agreement,
    draw_shift_batches,
    library_shift,
    log_agreement,
    map_batches,
    operator_norm_agreement,
    reference_weight_shift,
    shift_cases,
)
from verification.tolerances import eps

#: cases per shape and per unit of ``profile.scale`` (smoke: SMOKE_CASES per shape)
CASES_PER_SHAPE, SMOKE_CASES = 1024, 128
FAMILY_SHAPE = SHAPES[1]           # (d, d_k, d_v, n, m) = (4, 2, 2, 4, 4): n = m, d_v < d (projected attained case)
FAMILY_T0, FAMILY_STEPS = 1e-3, 4  # t = T0 2^k
EXPONENT_TOLERANCE = 1e-3


@functools.partial(jax.jit, static_argnames=("mutant",))
def mutated_mmd2(wk, target, prompt, mutant):
    """This check's mutants of the MMD, batched (a small program of their own: the shared one is not recompiled)."""
    def one(wk, target, prompt):
        if mutant == "exp-kernel":  # the x ⊗ dropped: the softmax kernel of the keys alone
            return {"mmd2": ik.mmd2(target @ wk.T, prompt @ wk.T, ik.exp_kernel())}
        if mutant == "rbf-kernel":
            return {"mmd2": ik.mmd2(target, prompt, ik.rbf_kernel(bandwidth=1.0))}
        return {"mmd2": ik.mmd2(target, prompt, ik.product_kernel(wk), estimator="unbiased")}

    return jax.vmap(one)(wk, target, prompt)


MMD2_MUTANTS = ("exp-kernel", "rbf-kernel", "unbiased-mmd")


def library_side(batch: ShiftBatch, mutant: str | None, chunk: int) -> dict:
    """The library's ``log ||ΔW||^2``, ``MMD_k^2`` (biased, unbiased) and ``||W^V||_op``, with this check's mutants."""
    arrays = batch.arrays() + (batch.target, batch.target)  # queries, reference: unused by Theorem 4.1
    lib = map_batches(library_shift, arrays, chunk)
    if mutant in MMD2_MUTANTS:
        lib["mmd2"] = map_batches(functools.partial(mutated_mmd2, mutant=mutant),
                                  (batch.wk, batch.target, batch.prompt), chunk)["mmd2"]
    if mutant == "eta-doubled":  # ΔW with 2 eta: ||ΔW||^2 four times larger
        lib["log_dw2"] = lib["log_dw2"] + 2 * math.log(2.0)
    # the bound's ||W^V||_op: the reference's SVD on every case (ik.operator_norm is compared on a sample)
    lib["wv_op"] = ref.smallest_singular_value(batch.wv) if mutant == "sigma-min" else ref.operator_norm(batch.wv)
    return lib


@dataclasses.dataclass(frozen=True)
class Judged:
    """Per-case judgements of one batch (arrays); every ``*_score`` <= 1 holds."""

    ratio: np.ndarray
    ratio_tolerance: np.ndarray
    bound_score: np.ndarray          # (ratio - 1) / tol, or |ratio - 1| / tol for the attained batch
    agreement_score: np.ndarray      # max over the compared quantities, in units of their round-off
    agreement_by_quantity: dict
    mmd_tilde: np.ndarray
    log_dw: np.ndarray
    log_bound: np.ndarray
    max_logit: np.ndarray

    @property
    def score(self) -> np.ndarray:
        return np.maximum(np.maximum(self.bound_score, self.agreement_score), (self.mmd_tilde / 2 - 1) / self.ratio_tolerance)


def judge(batch: ShiftBatch, mutant: str | None, *, attained: bool, chunk: int) -> Judged:
    lib = library_side(batch, mutant, chunk)
    refs = reference_weight_shift(batch)
    unit = refs.round_off
    agree = {
        "hs_norm": log_agreement(lib["log_dw2"], refs.dw, unit),
        "mmd2": agreement(lib["mmd2"], refs.mmd2, unit),
        "mmd2_unbiased": agreement(lib["mmd2_unbiased"], refs.mmd2_unbiased, unit),
    }
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_dw = 0.5 * lib["log_dw2"]
        log_mmd = np.where(lib["mmd2"] > 0, 0.5 * np.log(np.where(lib["mmd2"] > 0, lib["mmd2"], 1.0)), -np.inf)
        log_bound = math.log(2.0) + batch.log_eta + np.log(lib["wv_op"]) + log_mmd
        ratio = np.where(log_dw == -np.inf, 0.0, np.where(log_bound == -np.inf, np.inf, np.exp(log_dw - log_bound)))
        tol = OPERATIONS * eps(np.float64) * (refs.dw.condition + refs.mmd2.condition + 1.0) * (1.0 + refs.max_logit)
        excess = np.abs(ratio - 1.0) if attained else ratio - 1.0
        bound_score = np.where(np.isfinite(tol), excess / tol, 0.0)
        bound_score = np.where(np.isnan(ratio), np.inf, bound_score)
        mmd_tilde = np.exp(log_mmd - refs.log_mx - refs.log_mphi)
    agreement_score = np.max(np.stack(list(agree.values())), axis=0)
    op = operator_norm_agreement(batch.wv)
    agree["operator_norm"] = np.concatenate([op, np.zeros(batch.size - op.size)])
    agreement_score = np.maximum(agreement_score, agree["operator_norm"])
    return Judged(ratio, tol, bound_score, agreement_score, agree, mmd_tilde, log_dw, log_bound, refs.max_logit)


def blocked_agreement(batch: ShiftBatch, cases: int) -> float:
    """``mmd2(..., block_size=3)`` (the tiled path: odd tiles, padding, the online max shift) against the reference,
    on the first ``cases`` cases, one by one (one compiled program per kernel; under ``vmap`` it compiles 3x slower):
    the product kernel (biased), and the RBF kernel (bandwidth 1; biased and unbiased), whose zero-padded rows
    would contribute ``exp(-|x|^2/2)`` if a padding mask were off (they contribute 0 to the product kernel)."""
    refs = reference_weight_shift(batch)
    worst = 0.0
    for kind, estimator in (("product", "biased"), ("rbf", "biased"), ("rbf", "unbiased")):
        params = {"wk": batch.wk[:cases]} if kind == "product" else {"bandwidth": np.ones(cases)}
        total = ref.log_mmd2(batch.target[:cases], batch.prompt[:cases], kind, estimator=estimator, **params)
        lib = np.array([float(ik.mmd2(jnp.asarray(batch.target[i]), jnp.asarray(batch.prompt[i]),
                                      ik.product_kernel(jnp.asarray(batch.wk[i])) if kind == "product"
                                      else ik.rbf_kernel(bandwidth=1.0), estimator=estimator, block_size=3))
                        for i in range(cases)])
        pooled = np.concatenate([batch.target[:cases], batch.prompt[:cases]], axis=1)
        unit = refs.round_off[:cases] if kind == "product" else OPERATIONS * eps(np.float64) * (
            1.0 + np.max(ref.pairwise_squared_distances(pooled, pooled), axis=(1, 2)) / 2)  # 1 + max |log k|
        worst = max(worst, float(np.max(agreement(lib, total, unit))))
    return worst


def _family_batches(key, draws: int):
    """Coupled families at ``t = T0 2^k``: translation and scale with random W^V, translation with the isometric W^V.

    Returns ``{family: (batch of draws * steps cases, ordered draw-major)}``.
    """
    general, tight = draw_shift_batches(key, FAMILY_SHAPE, draws, max_scale=2.0)
    direction = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (draws, FAMILY_SHAPE[0]), jnp.float64))
    # the attained family shifts within the span that W^V is isometric on: P = W^V^T W^V / s^2
    s2 = (0.5 + np.abs(tight.log_eta) / 5.0) ** 2
    projected = np.einsum("bad,bae,be->bd", tight.wv, tight.wv, direction) / s2[:, None]
    ts = FAMILY_T0 * 2.0 ** np.arange(FAMILY_STEPS)

    def family(base: ShiftBatch, make_prompt):
        prompts = np.stack([make_prompt(base.target, t) for t in ts], axis=1)  # (draws, steps, n, d)
        rep = lambda a: np.repeat(a, FAMILY_STEPS, axis=0)  # noqa: E731
        return ShiftBatch(rep(base.wk), rep(base.wv), rep(base.target), prompts.reshape(-1, *prompts.shape[2:]),
                          rep(base.log_eta))

    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    mean = lambda x: x.mean(axis=-2, keepdims=True)  # noqa: E731
    return ts, {
        "translation": family(general, lambda x, t: x + t * unit(direction)[:, None, :]),
        "scale": family(general, lambda x, t: mean(x) + (1.0 + t) * (x - mean(x))),
        "translation (attained)": family(tight, lambda x, t: x + t * unit(projected)[:, None, :]),
    }


def _mean_ci(values) -> list[float]:
    values = np.asarray(values, np.float64)
    m = float(values.mean())
    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return [m, m - half, m + half]


def linear_growth(key, mutant, draws: int, chunk: int) -> dict:
    """Growth exponents and slopes at t -> 0 per draw (module docstring); ``score`` <= 1 holds."""
    ts, families = _family_batches(key, draws)
    out = {}
    for name, batch in families.items():
        j = judge(batch, mutant, attained=name.endswith("(attained)"), chunk=chunk)
        dw = np.exp(j.log_dw).reshape(draws, FAMILY_STEPS)
        bound = np.exp(j.log_bound).reshape(draws, FAMILY_STEPS)
        mmd = bound / (2 * np.exp(batch.log_eta.reshape(draws, FAMILY_STEPS)))  # ||W^V|| MMD: exponent of MMD
        with np.errstate(divide="ignore", invalid="ignore"):
            p = lambda f: np.log2(f[:, 1:] / f[:, :-1])  # noqa: E731  (growth exponents between successive t)
            exp_dw, exp_mmd = 2 * p(dw)[:, 0] - p(dw)[:, 1], 2 * p(mmd)[:, 0] - p(mmd)[:, 1]
            slope = lambda f: 2 * f[:, 0] / ts[0] - f[:, 1] / ts[1]  # noqa: E731  (lim f(t)/t, Richardson)
            slope_ratio = slope(dw) / slope(bound)
        # the slopes inherit the ratios' round-off, amplified 3x by the extrapolation
        slope_tol = 3 * np.max(j.ratio_tolerance.reshape(draws, FAMILY_STEPS), axis=1)
        slope_excess = np.abs(slope_ratio - 1) if name.endswith("(attained)") else slope_ratio - 1
        exponent_dev = np.maximum(np.abs(exp_dw - 1), np.abs(exp_mmd - 1))
        score = np.maximum.reduce([np.nan_to_num(exponent_dev / EXPONENT_TOLERANCE, nan=np.inf),
                                   np.nan_to_num(slope_excess / slope_tol, nan=np.inf),
                                   j.score.reshape(draws, FAMILY_STEPS).max(axis=1)])
        out[name] = {"score": float(score.max()), "t": ts.tolist(),
                     "exponent_dw": _mean_ci(exp_dw), "exponent_mmd": _mean_ci(exp_mmd),
                     "max_abs_exponent_minus_1": float(np.nanmax(exponent_dev)),
                     "slope_ratio_observed_over_bound": _mean_ci(slope_ratio),
                     "max_slope_ratio": float(np.nanmax(slope_ratio)), "draws": draws}
    return out


@register
class Theorem41(Check):
    id = "thm-4.1"
    kind = "theorem"
    title = "||ΔW||_HS <= 2 eta ||W^V||_op MMD_k(D, Q), k = (x.x') exp(W^K x . W^K x') (exact on samples)"
    mutants = {
        "sigma-min": "||W^V||_op replaced by the smallest singular value of W^V",
        "exp-kernel": "the MMD with the softmax kernel of the keys, the x ⊗ dropped from the feature",
        "rbf-kernel": "the MMD with a Gaussian RBF kernel (bandwidth 1) instead of the product kernel",
        "eta-doubled": "ΔW computed with 2 eta (a factor 2 off in the distilled step)",
        "unbiased-mmd": "the unbiased (U-statistic) MMD, which can be smaller than the biased one or negative",
    }

    def run(self, ctx: RunContext):
        smoke = ctx.profile.name == "smoke"
        per_shape = SMOKE_CASES if smoke else CASES_PER_SHAPE * ctx.profile.scale
        chunk = min(per_shape, CASES_PER_SHAPE)
        start = time.perf_counter()
        general_parts, tight_parts, judged_g, judged_t = [], [], [], []
        for index, shape in enumerate(SHAPES):
            general, tight = draw_shift_batches(jax.random.fold_in(ctx.key, index), shape, per_shape)
            general_parts.append(general)
            tight_parts.append(tight)
            judged_g.append(judge(general, ctx.mutant, attained=False, chunk=chunk))
            judged_t.append(judge(tight, ctx.mutant, attained=True, chunk=chunk))
        batched_s = time.perf_counter() - start
        blocked = blocked_agreement(general_parts[-1], 4 if smoke else 8 * ctx.profile.scale)
        cases = per_shape * len(SHAPES)
        scores_g = [j.score for j in judged_g]
        scores_t = [j.score for j in judged_t]
        worst_score = max(float(np.max(s)) for s in scores_g + scores_t)
        growth = linear_growth(jax.random.fold_in(ctx.key, 99), ctx.mutant, draws=32 if smoke else 64 * ctx.profile.scale,
                               chunk=chunk)
        growth_score = max(f["score"] for f in growth.values())

        def measure(case: ShiftCase):
            g, t = case.build()
            # padded to a full chunk: the compiled program of the batched sweep is reused
            return float(max(judge(g, ctx.mutant, attained=False, chunk=chunk).score[0],
                             judge(t, ctx.mutant, attained=True, chunk=chunk).score[0]))

        exploration = explore(shift_cases(), measure, max_examples=ctx.profile.examples,
                              seed_value=ctx.hypothesis_seed, fails=lambda score: score > 1.0, shrink=ctx.shrink)

        ratios_g = np.concatenate([j.ratio for j in judged_g])
        ratios_t = np.concatenate([j.ratio for j in judged_t])
        flat_g, flat_t = np.concatenate(scores_g), np.concatenate(scores_t)
        worst_general = int(np.nanargmax(np.where(np.isfinite(ratios_g), ratios_g, -np.inf)))
        case_of = lambda parts, i: parts[i // per_shape].case(i % per_shape)  # noqa: E731
        agreement = {q: float(max(np.max(j.agreement_by_quantity[q]) for j in judged_g + judged_t))
                     for q in judged_g[0].agreement_by_quantity}
        agreement["mmd2_blocked"] = blocked
        violated = (worst_score > 1.0 or growth_score > 1.0 or blocked > 1.0
                    or exploration.counterexample is not None)
        counterexample = None
        if exploration.counterexample is not None:
            case, score = exploration.counterexample
            counterexample = {"source": "hypothesis (shrunk)", "case": case.describe(), "score": score}
        elif worst_score > 1.0:
            use_t = float(np.max(flat_t)) > float(np.max(flat_g))
            i = int(np.argmax(flat_t if use_t else flat_g))
            batch_parts = tight_parts if use_t else general_parts
            counterexample = {"source": "batched sweep", "attained_family": use_t, "score": float((flat_t if use_t
                              else flat_g)[i]), "ratio": float((ratios_t if use_t else ratios_g)[i]),
                              **case_of(batch_parts, i)}
        elif growth_score > 1.0:
            counterexample = {"source": "linear growth", "families": growth}
        elif blocked > 1.0:
            counterexample = {"source": "blocked mmd2 against the reference", "agreement": blocked}
        cases_total = 2 * cases + exploration.cases * 2 + sum(3 * FAMILY_STEPS * f["draws"] for f in growth.values()) // 3
        tight_dev = float(np.max(np.abs(ratios_t - 1.0)))
        tightest = float(ratios_t[np.argmin(np.abs(ratios_t - 1.0))])
        failed = [name for name, bad in (("library/reference agreement", max(agreement.values()) > 1.0),
                                         ("bound", float(np.max([np.max(j.bound_score) for j in judged_g])) > 1.0),
                                         ("attained |ratio-1|", float(np.max([np.max(j.bound_score)
                                                                              for j in judged_t])) > 1.0),
                                         ("linear growth", growth_score > 1.0),
                                         ("hypothesis edge cases", exploration.counterexample is not None)) if bad]
        summary = (f"max ||ΔW||/bound {ratios_g.max():.4g} over {cases} random-W^V cases (logits up to "
                   f"{max(float(np.max(j.max_logit)) for j in judged_g):.3g}); attained for isometric W^V: "
                   f"|ratio-1| <= {tight_dev:.1e}; library = reference within {max(agreement.values()):.2g} x "
                   f"round-off; growth exponents at t->0: "
                   + ", ".join(f"{n} {f['exponent_dw'][0]:.4f}" for n, f in growth.items()))
        if violated:
            summary = "VIOLATED (" + ", ".join(failed) + "): " + summary
        return self.result(
            ctx, status="violated" if violated else "holds", cases=cases_total, worst=float(ratios_g.max()),
            worst_label="max ||ΔW|| / bound (random W^V)",
            tolerance=1.0 + float(max(np.max(j.ratio_tolerance[np.isfinite(j.ratio_tolerance)]) for j in judged_g)),
            tolerance_reason="ratio <= 1 + 64 eps (cond_HS + cond_MMD + 1)(1 + max logit) per case (two-sided for "
                             "the isometric W^V); library = reference within 64 eps (1 + max logit) sum|terms|; "
                             f"growth exponents 1 +/- {EXPONENT_TOLERANCE}",
            tightness=1.0 / tightest if tightest > 0 else None,
            figures={
                "cases_batched": 2 * cases, "cases_hypothesis": 2 * exploration.cases,
                "cases_per_second": 2 * cases / batched_s,
                "max_ratio_random_wv": float(ratios_g.max()),
                "per_case_quantiles": case_quantiles(ratios_g, "||ΔW|| / bound (random W^V)", 1.0),
                "max_abs_tight_ratio_minus_1": tight_dev,
                "max_agreement_in_round_off_units": agreement,
                "max_mmd_tilde": float(max(np.nanmax(j.mmd_tilde) for j in judged_g + judged_t)),
                "max_logit": float(max(np.max(j.max_logit) for j in judged_g)),
                "max_score": max(worst_score, growth_score),
                "linear_growth": growth,
            },
            counterexample=counterexample, worst_case=case_of(general_parts, worst_general), summary=summary)
