"""thm-4.1: ||ΔW||_HS <= 2 eta ||W^V||_op MMD_k(𝒟, 𝒬) (docs/statements.md#thm-4-1, Theorem 4.1).

Statement: with ``W̄(P) = 2 eta E_P[W^V x ⊗ phi(W^K x)]`` and ``ΔW = W̄(𝒬) - W̄(𝒟)``,

    ||ΔW||_HS <= 2 eta ||W^V||_op MMD_k(𝒟, 𝒬),   k(x, x') = (x . x') exp((W^K x) . (W^K x')),

with the biased (V-statistic) MMD; exact for empirical measures, with equality when
``W^V^T W^V = ||W^V||_op^2 I`` on the span of the tokens.

Cases: batches of one shape drawn with ``jax.random`` from ``ctx.key``
(:func:`verification.cases.shift_cases.draw_shift_batches`: logits ``||W^K x||^2`` up to a few hundred,
``log eta`` in [-5, 5]), each with its attained counterpart (isometric W^V on the tokens' span);
the library evaluated under ``jax.vmap`` (one compiled program per shape), the float64 reference
(:mod:`verification.oracles.reference`) batched in NumPy. Then Hypothesis over the same construction
(edge cases, shrinking to a minimal failing case).

Judged per case (each a violation of this check):

1. the library agrees with the reference: ``||ΔW||^2`` (``distilled_weight_difference`` + ``hs_norm``
   against the explicit double sum), ``MMD_k^2`` by ``mmd2`` dense, blocked (``block_size=3``, on a few cases) and
   unbiased (against the reference U-statistic), ``(sign, log MMD_k^2)`` by ``log_mmd2`` (its value
   ``sign exp(log)`` against the reference, in the same units as ``mmd2``), ``ik.operator_norm`` against the reference SVD (on
   the first 64 cases of each batch: it is host-side; the bounds use the reference's ``||W^V||_op``);
2. the bound, from the library's values: ``ratio = ||ΔW|| / (2 eta ||W^V||_op MMD_k) <= 1``;
3. attained, two-sided: ``|ratio - 1|`` within tolerance for the isometric W^V (a ΔW at half its size
   gives 0.5 and is a violation);
4. ``MMD_k~ <= 2`` for ``k~ = k / (M_x M_phi)^2`` with ``M_x = max ||x||``, ``M_phi = max exp(||W^K x||^2/2)``
   over both samples: ``k~ <= 1`` there (Cauchy-Schwarz). (The paper's normalised form of the bound is
   the same inequality, since the normalisers cancel; it is not judged twice.)

Linear growth, judged per draw on coupled shift families (𝒬_t = 𝒟 + t u, and 𝒬_t = mean + (1+t)(𝒟 -
mean)) at ``t = T0 2^k``, k = 0..3: the growth exponent of ``||ΔW||`` and of ``MMD`` at ``t -> 0``
(Richardson-extrapolated ``log2`` ratios, ``2 p(t) - p(2t)``) must be 1 within that draw's own error bound,
the extrapolated slope ``lim ||ΔW||/t`` at most the bound's ``lim 2 eta ||W^V|| MMD / t`` (up to its
truncation bound), and equal to it for the isometric W^V (two-sided, round-off only). The error bound of
the exponent is ``15 T0^2 sup|h''| / ln 2`` plus round-off, ``h(s) = log(||ΔW(s)||/s)``, with ``sup|h''|``
bounded from the family's own second and third derivatives on ``[0, 4 T0]``
(:func:`growth_error_bounds`, derivation there): the remaining bias of the extrapolation is
``O(T0^2 h'')``, and ``h''`` reaches ``10^5`` for large logits under the scale family, so no constant
covers every draw. A draw whose first derivative is not resolved (``||ΔW(t)||/t`` not bounded away from
0 on ``[0, 4 T0]`` by that bound) is rejected, counted in ``rejected_draws``. Mean slope ratios and
exponents are reported with 95 % t-intervals over the draws (descriptive: not judged).

Tolerance: ``||ΔW||^2`` and ``MMD^2`` are double sums of at most 169 terms whose logits carry a relative
error of a few eps each: library and reference must agree within
``64 eps (1 + max logit) sum|terms|`` (:func:`verification.cases.shift_cases.agreement`; ``log_mmd2``'s
``sign exp(log_abs)`` carries the same sums' round-off plus ``~eps |log_abs|`` relative from its log and exp,
and ``|log MMD^2| <= log sum|terms|`` is far below ``64 (1 + max logit)`` where ``MMD^2`` is not negligible
against ``sum|terms|``); the ratio within
``64 eps (cond_HS + cond_MMD + 1)(1 + max logit)`` with the reference's conditions; ``||W^V||_op``
within ``64 eps ||W^V||_op`` (SVD is backward stable). The ratio tolerance is a first-order bound, rigorous
while ``u cond <= 1/2`` for both sums (``u = 64 eps (1 + max logit)``;
:func:`verification.cases.shift_cases.resolved_intervals` derives it). Past that the sum is below its round-off
resolution (the library's ``MMD^2`` may be <= 0 at round-off, and a bound of exactly 0 would make a true case look
violated): the case is judged instead on the absolute intervals ``lib +- u sum|terms|``, the smallest ``||ΔW||``
over the largest bound they allow (times ``1 + u``) <= 1, one-sided and true at any conditioning; its ``ratio`` is
that certified value, counted in ``figures["cases_below_round_off_resolution"]``. ``MMD~ <= 2`` within ``u``: the
library's ``MMD^2`` is within ``u sum|terms|`` and ``sum|terms| <= 4 (M_x M_phi)^2``.

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
from verification.cases.explore import explore
from verification.cases.shift_cases import (
    OPERATIONS,
    SHAPES,
    ReferenceShift,
    ShiftBatch,
    ShiftCase,
    agreement,
    draw_shift_batches,
    library_shift,
    log_agreement,
    map_batches,
    operator_norm_agreement,
    reference_weight_shift,
    resolved_intervals,
    shift_cases,
)
from verification.core.model import Check, RunContext, case_quantiles
from verification.core.tolerances import eps, require_finite
from verification.oracles import reference as ref

#: cases per shape and per unit of ``profile.scale`` (smoke: SMOKE_CASES per shape)
CASES_PER_SHAPE, SMOKE_CASES = 1024, 128
FAMILY_SHAPE = SHAPES[1]           # (d, d_k, d_v, n, m) = (4, 2, 2, 4, 4): n = m, d_v < d (projected attained case)
FAMILY_T0, FAMILY_STEPS = 1e-3, 4  # t = T0 2^k


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

    ratio: np.ndarray                # the certified lower bound of the true ratio where not resolved
    ratio_tolerance: np.ndarray
    resolved: np.ndarray             # the library's ||ΔW||^2 and MMD^2 resolved (shift_cases.resolved_intervals)
    bound_score: np.ndarray          # (ratio - 1) / tol, or |ratio - 1| / tol for the attained batch
    agreement_score: np.ndarray      # max over the compared quantities, in units of their round-off
    agreement_by_quantity: dict
    mmd_tilde: np.ndarray
    log_dw: np.ndarray
    log_bound: np.ndarray
    max_logit: np.ndarray
    reference: ReferenceShift

    @property
    def score(self) -> np.ndarray:
        # MMD~^2 <= 4 + 4u: the library's MMD^2 is within u sum|terms| and sum|terms| <= 4 (M_x M_phi)^2
        mmd_tilde_score = (self.mmd_tilde / 2 - 1) / self.reference.round_off
        return np.maximum(np.maximum(self.bound_score, self.agreement_score), mmd_tilde_score)


def judge(batch: ShiftBatch, mutant: str | None, *, attained: bool, chunk: int) -> Judged:
    lib = library_side(batch, mutant, chunk)
    refs = reference_weight_shift(batch)
    case_of = batch.case
    require_finite({"library MMD_k^2": lib["mmd2"], "library unbiased MMD_k^2": lib["mmd2_unbiased"],
                    "||W^V||_op": lib["wv_op"]}, case_of,
                   logs={"library log ||ΔW||^2": lib["log_dw2"], "reference log ||ΔW||^2": refs.dw.log_abs,
                         "reference log MMD_k^2": refs.mmd2.log_abs})
    unit = refs.round_off
    agree = {
        "hs_norm": log_agreement(lib["log_dw2"], refs.dw, unit),
        "mmd2": agreement(lib["mmd2"], refs.mmd2, unit),
        "log_mmd2": log_agreement(lib["log_mmd2"], refs.mmd2, unit, sign=lib["log_mmd2_sign"]),
        "mmd2_unbiased": agreement(lib["mmd2_unbiased"], refs.mmd2_unbiased, unit),
    }
    intervals = resolved_intervals(lib["log_dw2"], lib["mmd2"], refs)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_dw = 0.5 * lib["log_dw2"]
        log_mmd = np.where(lib["mmd2"] > 0, 0.5 * np.log(np.where(lib["mmd2"] > 0, lib["mmd2"], 1.0)), -np.inf)
        log_scale = math.log(2.0) + batch.log_eta + np.log(lib["wv_op"])
        log_bound = log_scale + log_mmd
        ratio = np.where(log_dw == -np.inf, 0.0, np.where(log_bound == -np.inf, np.inf, np.exp(log_dw - log_bound)))
        tol = OPERATIONS * eps(np.float64) * (refs.dw.condition + refs.mmd2.condition + 1.0) * (1.0 + refs.max_logit)
        excess = np.abs(ratio - 1.0) if attained else ratio - 1.0
        # below round-off resolution (resolved_intervals): the smallest ||ΔW|| over the largest bound the library's
        # values allow, <= 1 for every true case at any conditioning (one-sided: the attained lower side needs a
        # resolved ratio); the extra u covers ||W^V||_op and eta, as the +1 in tol does
        certified = np.where(intervals.log_dw_lo == -np.inf, 0.0, np.exp(
            intervals.log_dw_lo - log_scale - intervals.log_mmd_hi - np.log1p(refs.round_off)))
        # a condition is inf where the reference's own sum cancels to 0: such a case is not resolved
        require_finite({"ratio tolerance (conditions of ||ΔW||^2, MMD^2)": np.where(intervals.resolved, tol, 0.0)},
                       case_of)
        ratio = np.where(intervals.resolved, ratio, certified)
        bound_score = np.where(intervals.resolved, excess / tol, certified)
        # +inf only for ||ΔW|| > 0 over a bound of exactly 0 (MMD^2 <= 0): a finite inequality that failed
        require_finite({"bound score": bound_score}, case_of, allow_inf=True)
        mmd_tilde = np.exp(log_mmd - refs.log_mx - refs.log_mphi)
    agreement_score = np.max(np.stack(list(agree.values())), axis=0)
    op = operator_norm_agreement(batch.wv)
    agree["operator_norm"] = np.concatenate([op, np.zeros(batch.size - op.size)])
    agreement_score = np.maximum(agreement_score, agree["operator_norm"])
    return Judged(ratio, tol, intervals.resolved, bound_score, agreement_score, agree, mmd_tilde, log_dw, log_bound,
                  refs.max_logit, refs)


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

    Every family moves the prompt's rows along straight lines from the target's, ``x_i + t w_i``: ``w_i = u`` (a
    unit vector) for a translation, ``w_i = x_i - mean`` for the scale family. Returns ``t`` and
    ``{family: (batch of draws * steps cases, ordered draw-major; velocities w (draws, n, d))}``.
    """
    general, tight = draw_shift_batches(key, FAMILY_SHAPE, draws, max_scale=2.0)
    direction = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (draws, FAMILY_SHAPE[0]), jnp.float64))
    # the attained family shifts within the span that W^V is isometric on: P = W^V^T W^V / s^2
    s2 = (0.5 + np.abs(tight.log_eta) / 5.0) ** 2
    projected = np.einsum("bad,bae,be->bd", tight.wv, tight.wv, direction) / s2[:, None]
    ts = FAMILY_T0 * 2.0 ** np.arange(FAMILY_STEPS)

    def family(base: ShiftBatch, velocity):
        velocity = np.broadcast_to(velocity, base.target.shape)
        prompts = np.stack([base.target + t * velocity for t in ts], axis=1)  # (draws, steps, n, d)
        rep = lambda a: np.repeat(a, FAMILY_STEPS, axis=0)  # noqa: E731
        return ShiftBatch(rep(base.wk), rep(base.wv), rep(base.target), prompts.reshape(-1, *prompts.shape[2:]),
                          rep(base.log_eta)), velocity

    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    mean = lambda x: x.mean(axis=-2, keepdims=True)  # noqa: E731
    return ts, {
        "translation": family(general, unit(direction)[:, None, :]),
        "scale": family(general, general.target - mean(general.target)),
        "translation (attained)": family(tight, unit(projected)[:, None, :]),
    }


#: why a draw of a growth family is not judged (the key of ``figures["linear_growth"][family]["rejected_draws"]``)
GROWTH_UNRESOLVED = "first derivative not resolved (||ΔW(t)||/t or MMD/t not bounded away from 0 on [0, 4 T0])"


def _phi_derivative_norms(k0, k1, span: float) -> list[np.ndarray]:
    """Upper bounds on ``||d^j/ds^j phi(k0 + s k1)||`` over ``s in [0, span]``, j = 0..3, with ``exp(K^2/2)`` left out
    (``K = |k0| + span |k1|``; the caller multiplies it back, shifted): ``sqrt(P_j(|k(s).k1|, |k1|^2))``.

    ``phi`` is the feature map of ``kappa(k, k') = exp(k.k')``, so ``<phi^(j)(s), phi^(j)(s)> = d^j/ds^j d^j/ds'^j
    exp(k(s).k(s'))`` at ``s' = s``; with ``k(s + a).k(s + b) = |k(s)|^2 + (a + b) beta + a b gamma``,
    ``beta = k(s).k1``, ``gamma = |k1|^2``, the coefficient of ``a^j b^j`` times ``(j!)^2`` is
    ``exp(|k(s)|^2) P_j``, ``P_j = (j!)^2 sum_l gamma^l / l! beta^(2(j-l)) / ((j-l)!)^2``: ``P_0 = 1``,
    ``P_1 = beta^2 + gamma``, ``P_2 = beta^4 + 4 beta^2 gamma + 2 gamma^2``,
    ``P_3 = beta^6 + 9 beta^4 gamma + 18 beta^2 gamma^2 + 6 gamma^3``; all increase with ``|beta| <= K |k1|`` and
    ``|k(s)| <= K``.
    """
    gamma = np.sum(k1 * k1, axis=-1)
    beta2 = ((np.linalg.norm(k0, axis=-1) + span * np.sqrt(gamma)) ** 2) * gamma
    polys = [np.ones_like(gamma), beta2 + gamma, beta2**2 + 4 * beta2 * gamma + 2 * gamma**2,
             beta2**3 + 9 * beta2**2 * gamma + 18 * beta2 * gamma**2 + 6 * gamma**3]
    return [np.sqrt(p) for p in polys]


def growth_error_bounds(wk, values, target, velocity, log_norm_t0, t0: float, *, round_off) -> dict:
    """Per draw, bounds on the error of the Richardson-extrapolated growth exponent and slope of
    ``f(t) = ||F(t)||``, ``F(t) = (1/n) sum_i Psi(x_i + t w_i) - (1/n) sum_i Psi(x_i)``, ``Psi(x) = V x ⊗ phi(W^K x)``.

    ``F`` is ``ΔW / (2 eta)`` for ``V = W^V`` and the MMD's mean-embedding difference for ``V = I`` (``values``
    None); ``target`` holds the ``x_i`` (the family starts at 𝒟), ``velocity`` the ``w_i``, ``log_norm_t0`` is
    ``log f(T0)`` (the reference's), ``round_off (draws, 3)`` the relative error of the library's ``f(T0 2^k)^2``
    (``64 eps (1 + max logit)`` times its condition: the agreement budget).

    Derivation. ``F(0) = 0``, so ``A(s) = F(s)/s = int_0^1 F'(s tau) dtau`` with ``||A'|| <= M2/2``,
    ``||A''|| <= M3/3``, ``M_r = sup_{[0, 4 T0]} ||F^(r)||``. The measured exponent is
    ``E = 2 p(T0) - p(2 T0)``, ``p(t) = log2(f(2t)/f(t))``, i.e. ``E - 1 = (-2 h(T0) + 3 h(2T0) - h(4T0)) / ln 2``
    with ``h(s) = log ||A(s)||``: the constant and linear terms of ``h``'s Taylor expansion at 0 cancel and the
    Lagrange remainders leave ``|E - 1| <= (2 + 12 + 16)/2 T0^2 sup|h''| / ln 2 = 15 T0^2 sup|h''| / ln 2``.
    With ``a = inf_{[0, 4T0]} ||A|| >= ||A(T0)|| - 3 T0 M2/2``,
    ``|h''| = |(||A'||^2 + <A, A''>)/||A||^2 - 2 <A, A'>^2/||A||^4| <= 3 (M2/(2a))^2 + M3/(3a)``.
    The slope ``2 A(T0) - A(2T0)`` misses ``||A(0)||`` by at most ``3 T0^2 sup|d^2 ||A||/ds^2|``, and
    ``|d^2||A||/ds^2| <= ||A'||^2/a + ||A''||``: relative to ``||A(0)|| >= a``, at most
    ``3 T0^2 ((M2/(2a))^2 + M3/(3a))``. ``M_r`` by the triangle inequality over the rows:
    ``d^r/ds^r Psi(x + s w) = V(x + s w) ⊗ phi^(r) + r V w ⊗ phi^(r-1)`` (``V`` linear), so
    ``||Psi^(r)|| <= (|V x| + 4T0 |V w|) n_r + r |V w| n_(r-1)`` with ``n_j`` from :func:`_phi_derivative_norms`
    times ``exp(K^2/2)``, ``K = |W^K x| + 4T0 |W^K w|`` (``|k(s)| <= K``). Every quantity is the family's own, per
    draw: no constant tuned to the generator's draws. Round-off: ``E`` is ``(-2 log f0 + 3 log f1 - log f2)/ln 2``
    and ``log f_k`` is off by at most ``-log(1 - u_k)/2`` for a relative error ``u_k`` of ``f_k^2``.

    Returns ``{"exponent": (draws,), "slope": (draws,), "resolved": (draws,) bool}``: the exponent's and the
    slope's (relative) error bounds, and whether the draw's first derivative is resolved (``a > 0`` and
    ``u_k < 1/2``); an unresolved draw cannot be judged and is rejected (counted).
    """
    span = 4.0 * t0
    k0, k1 = np.einsum("bkd,bid->bik", wk, target), np.einsum("bkd,bid->bik", wk, velocity)
    v0, v1 = (target, velocity) if values is None else (np.einsum("bad,bid->bia", values, target),
                                                         np.einsum("bad,bid->bia", values, velocity))
    v_norm = np.linalg.norm(v0, axis=-1) + span * np.linalg.norm(v1, axis=-1)
    v1_norm = np.linalg.norm(v1, axis=-1)
    log_k = 0.5 * (np.linalg.norm(k0, axis=-1) + span * np.linalg.norm(k1, axis=-1)) ** 2
    shift = np.max(log_k, axis=-1, keepdims=True)  # exp(K^2/2) factored out per draw (it reaches e^100 and more)
    n = [p * np.exp(log_k - shift) for p in _phi_derivative_norms(k0, k1, span)]
    m2 = np.mean(v_norm * n[2] + 2 * v1_norm * n[1], axis=-1)
    m3 = np.mean(v_norm * n[3] + 3 * v1_norm * n[2], axis=-1)
    a = np.exp(log_norm_t0 - shift[:, 0]) / t0 - 1.5 * t0 * m2
    resolved = (a > 0) & np.all(round_off < 0.5, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        first, second = (m2 / (2 * a)) ** 2, m3 / (3 * a)
        log_error = -0.5 * np.log1p(-np.minimum(round_off, 0.5))
        exponent = (15 * t0**2 * (3 * first + second) + log_error @ np.array([2.0, 3.0, 1.0])) / math.log(2.0)
        slope = 3 * t0**2 * (first + second)
    return {"exponent": np.where(resolved, exponent, np.inf), "slope": np.where(resolved, slope, np.inf),
            "resolved": resolved}


def _mean_ci(values) -> list[float] | None:
    values = np.asarray(values, np.float64)
    if values.size < 2:
        return None
    m = float(values.mean())
    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return [m, m - half, m + half]


def linear_growth(key, mutant, draws: int, chunk: int) -> dict:
    """Growth exponents and slopes at t -> 0 per draw (module docstring); ``score`` <= 1 holds.

    Each draw's exponents are judged against that draw's own error bound (:func:`growth_error_bounds`), the slope
    ratio against its truncation bound plus the ratios' round-off (3x by the extrapolation); for the attained
    family ``||ΔW(t)||`` equals the bound at every ``t``, so the truncation cancels in the slope ratio and only the
    round-off remains (two-sided). Deterministic: no level is spent here.
    """
    ts, families = _family_batches(key, draws)
    out = {}
    for name, (batch, velocity) in families.items():
        attained = name.endswith("(attained)")
        j = judge(batch, mutant, attained=attained, chunk=chunk)
        dw = np.exp(j.log_dw).reshape(draws, FAMILY_STEPS)
        bound = np.exp(j.log_bound).reshape(draws, FAMILY_STEPS)
        mmd = bound / (2 * np.exp(batch.log_eta.reshape(draws, FAMILY_STEPS)))  # ||W^V|| MMD: exponent of MMD
        steps = lambda a: a.reshape(draws, FAMILY_STEPS)  # noqa: E731
        first = np.arange(0, batch.size, FAMILY_STEPS)
        refs = j.reference
        errors = {
            "dw": growth_error_bounds(batch.wk[first], batch.wv[first], batch.target[first], velocity,
                                      steps(0.5 * refs.dw.log_abs - math.log(2.0) - batch.log_eta)[:, 0], ts[0],
                                      round_off=steps(refs.round_off * refs.dw.condition)[:, :3]),
            "mmd": growth_error_bounds(batch.wk[first], None, batch.target[first], velocity,
                                       steps(0.5 * refs.mmd2.log_abs)[:, 0], ts[0],
                                       round_off=steps(refs.round_off * refs.mmd2.condition)[:, :3]),
        }
        resolved = errors["dw"]["resolved"] & errors["mmd"]["resolved"]
        with np.errstate(divide="ignore", invalid="ignore"):
            p = lambda f: np.log2(f[:, 1:] / f[:, :-1])  # noqa: E731  (growth exponents between successive t)
            exp_dw, exp_mmd = 2 * p(dw)[:, 0] - p(dw)[:, 1], 2 * p(mmd)[:, 0] - p(mmd)[:, 1]
            slope = lambda f: 2 * f[:, 0] / ts[0] - f[:, 1] / ts[1]  # noqa: E731  (lim f(t)/t, Richardson)
            slope_ratio = slope(dw) / slope(bound)
            # a library ||ΔW|| or MMD^2 that is 0 or negative at some t > 0 (finite values) has no exponent: the
            # growth is not linear, a failed inequality, not an error
            positive = np.all((dw > 0) & (mmd > 0), axis=1)
            exponent_score = np.where(positive, np.maximum(np.abs(exp_dw - 1) / errors["dw"]["exponent"],
                                                           np.abs(exp_mmd - 1) / errors["mmd"]["exponent"]), np.inf)
            round_off = 3 * np.max(j.ratio_tolerance.reshape(draws, FAMILY_STEPS), axis=1)
            if attained:
                slope_tol, slope_excess = round_off, np.abs(slope_ratio - 1)
            else:
                e_dw, e_b = errors["dw"]["slope"], errors["mmd"]["slope"]
                slope_tol, slope_excess = (e_dw + e_b) / np.maximum(1 - e_b, 0.0) + round_off, slope_ratio - 1
            slope_score = np.where(positive, slope_excess / slope_tol, np.inf)
        score = np.maximum.reduce([exponent_score, slope_score, j.score.reshape(draws, FAMILY_STEPS).max(axis=1)])
        score = np.where(resolved, score, 0.0)  # an unresolved draw is rejected (counted), not judged
        require_finite({f"{name}: growth score": score}, allow_inf=True)
        # the figures describe the draws with an exponent (all of them unless the library's values were not positive)
        exponent_dev = np.maximum(np.abs(exp_dw - 1), np.abs(exp_mmd - 1))[positive]
        tolerance = np.minimum(errors["dw"]["exponent"], errors["mmd"]["exponent"])
        out[name] = {"score": float(score.max()), "t": ts.tolist(),
                     "exponent_dw": _mean_ci(exp_dw[positive]), "exponent_mmd": _mean_ci(exp_mmd[positive]),
                     "max_abs_exponent_minus_1": float(exponent_dev.max()) if exponent_dev.size else None,
                     "exponent_tolerance": _quantiles(tolerance[resolved]),
                     "slope_ratio_observed_over_bound": _mean_ci(slope_ratio[positive]),
                     "max_slope_ratio": float(slope_ratio[positive].max()) if positive.any() else None,
                     "draws": draws,
                     "rejected_draws": {GROWTH_UNRESOLVED: int(np.sum(~resolved))}}
    return out


def _quantiles(values) -> dict:
    """Smallest, median and largest of a per-draw bound (the bound differs per draw)."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return {"min": None, "median": None, "max": None}
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


class Theorem41(Check):
    id = "thm-4.1"
    kind = "theorem"
    order = 410  # its place in the report: docs/statements.md order
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
                   + ", ".join(f"{n} {f['exponent_dw'][0]:.4f}" if f["exponent_dw"] else f"{n} none"
                              for n, f in growth.items()))
        if violated:
            summary = "VIOLATED (" + ", ".join(failed) + "): " + summary
        return self.result(
            ctx, status="violated" if violated else "holds", cases=cases_total, worst=float(ratios_g.max()),
            worst_label="max ||ΔW|| / bound (random W^V)",
            tolerance=1.0 + float(max(np.max(j.ratio_tolerance[j.resolved], initial=0.0) for j in judged_g)),
            tolerance_reason="ratio <= 1 + 64 eps (cond_HS + cond_MMD + 1)(1 + max logit) per case (two-sided for "
                             "the isometric W^V); library = reference within 64 eps (1 + max logit) sum|terms|; "
                             "growth exponents 1 +/- each draw's own truncation (15 T0^2 sup|h''|/ln 2) + round-off bound",
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
                "cases_below_round_off_resolution": int(sum(np.sum(~j.resolved) for j in judged_g + judged_t)),
                "max_score": max(worst_score, growth_score),
                "linear_growth": growth,
            },
            counterexample=counterexample, worst_case=case_of(general_parts, worst_general), summary=summary)
