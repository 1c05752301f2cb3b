"""conj-4.1: ||ΔW|| <= c MMD_{k0} for a generic characteristic kernel k0 (docs/statements.md#conj-4-1, Conjecture 4.1').

The paper's phrasing, ``||ΔW|| <= eta M_V M_x M_phi MMD`` with an unspecified kernel, is probed with
kernels bounded by 1 on the support, like the normalised ``k~`` of Theorem 4.1, through

    c_hat = ||ΔW||_HS / (2 eta ||W^V||_op M_x M_phi MMD_{k0}(𝒟, 𝒬)),   2 eta = 1,

``M_x = max ||x||``, ``M_phi = max exp(||W^K x||^2 / 2)`` over both samples. Kernels: linear
(``x . x' / M_x^2``), Gaussian RBF at 0.1, 1, 10, 100 times the median heuristic, Laplace at 1 and 10
times the median, and the CONTROL ``k~ = product_kernel(W^K) / (M_x M_phi)^2``, for which ``c_hat <= 1``
is Theorem 4.1: the control must survive.

Cases: batches drawn with ``jax.random`` (:data:`SHAPES`; 𝒟 standard normal, 𝒬 a translation of 𝒟 by
``t ~ U(0.05, 3)`` or 𝒟 scaled about its mean by ``1 + t``: equal means, different covariance; for the
scale family 𝒟 is mirrored about 0 (rows ``x, -x``), so both means are exactly 0 in floating point and the
linear kernel's MMD^2 is exactly 0, which ``--certify`` proves in rational arithmetic); every
kernel evaluated on every case under one ``jax.vmap``-ed program per shape; the float64 reference
(:mod:`verification.oracles.reference`, its own median heuristic) on the same cases. Hypothesis then searches
pairs and shrinks the linear kernel's counterexample to a minimal one.

Per kernel (a sub-verdict each, in ``figures["per_kernel"]``): ``refuted`` when a case has
``c_hat > THRESHOLD`` or ``MMD_{k0}^2`` zero up to round-off (``<= 64 eps * 4``: the normalised kernels
are <= 1) while ΔW is certified non-zero (``hs_norm``'s condition x 64 eps < 1/2); otherwise
``survives`` with the largest ``c_hat`` found (evidence, not a proof). The constant is reference-checked:
the library's ``MMD_{k0}^2`` must equal the reference's on every case within ``64 eps [(1 + max|log k|)
sum|terms| + sum_ij |w_ij| r_ij]`` (``r_ij`` the entry's round-off scale, which for the linear and product
kernels includes the dot product's ``sum_d |x_d y_d|``: see :func:`mmd_agreement_units`), its median heuristic
within ``64 eps``, its ``||ΔW||^2`` within thm-4.1's budget, and the largest ``c_hat`` is reported from both.
Also compared with the reference (:mod:`verification.cases.mmd_agreement`):
every kernel's Gram matrix (both forms), ``squared_distances`` (both branches), ``mmd``,
``mmd2_from_features``, and ``mmd_permutation_test`` (statistic, p-value, size under the null, power).

Status: ``violated`` when the library disagrees with the reference anywhere (a broken RBF kernel or median
heuristic is noticed although the linear kernel refutes the conjecture); else ``inconclusive`` when the
control is refuted (Theorem 4.1 would be false); else ``refuted`` when a probed kernel is refuted, else
``survives``.

``worst_case`` (for ``--certify``): the counterexample of the linear kernel (else of the first refuted kernel),
keys ``kernel``, ``wk``, ``wv``, ``target``, ``prompt``, ``log_eta`` (``log 1/2``), ``bandwidth`` (rbf/laplace,
the absolute bandwidth), ``threshold``; ``figures["counterexamples"]`` holds one such record per refuted kernel.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

import iclkd_jax as ik
from verification.cases import mmd_agreement
from verification.cases.explore import explore
from verification.cases.shift_cases import OPERATIONS, cap_logits, draw_normals, log_agreement, map_batches
from verification.cases.strategies import standard_normal_pool
from verification.core.budget import Judgement
from verification.core.model import Check, RunContext
from verification.core.tolerances import eps, require_finite
from verification.oracles import reference as ref

#: c_hat above this refutes the conjecture for that kernel (the control's supremum is 1)
THRESHOLD = 1e3
#: (d, d_k, d_v, n): 𝒬 has as many points as 𝒟; the first one is where shrinking ends
SHAPES = ((2, 2, 2, 2), (4, 3, 3, 6))
#: name -> (kind, bandwidth as a multiple of the median heuristic)
KERNELS = {
    "linear": ("linear", None),
    "rbf-0.1x": ("rbf", 0.1), "rbf-1x": ("rbf", 1.0), "rbf-10x": ("rbf", 10.0), "rbf-100x": ("rbf", 100.0),
    "laplace-1x": ("laplace", 1.0), "laplace-10x": ("laplace", 10.0),
    "product (control)": ("product", None),
}
CONTROL = "product (control)"
BANDWIDTH_KERNELS = [name for name, (kind, _) in KERNELS.items() if kind in ("rbf", "laplace")]
ZERO_MMD2 = 64.0 * eps(np.float64) * 4.0
LOG_HALF = math.log(0.5)  # 2 eta = 1
CASES_PER_SHAPE, SMOKE_CASES = 256, 64


@dataclasses.dataclass(frozen=True)
class PairBatch:
    wk: np.ndarray       # (B, d_k, d)
    wv: np.ndarray       # (B, d_v, d)
    target: np.ndarray   # (B, n, d)
    prompt: np.ndarray   # (B, n, d)
    family: np.ndarray   # (B,) "scale" | "shift"

    @property
    def size(self) -> int:
        return int(self.wk.shape[0])

    def case(self, i: int, kernel: str, bandwidth: float | None) -> dict:
        out = {"kernel": kernel, "wk": self.wk[i].tolist(), "wv": self.wv[i].tolist(),
               "target": self.target[i].tolist(), "prompt": self.prompt[i].tolist(), "log_eta": LOG_HALF,
               "threshold": THRESHOLD, "family": str(self.family[i])}
        if bandwidth is not None:
            out["bandwidth"] = float(bandwidth)
        return out


def _build(wk, wv, target, direction, scale_family, t):
    # scale family: 𝒟 mirrored about 0 (x and -x round alike, an odd row is 0), so 𝒟 and 𝒬 = (1 + t) 𝒟 both
    # have mean exactly 0: an exact counterexample for the linear kernel, not MMD^2 ~ 1e-33 from rounding
    half = target.shape[-2] // 2
    mirrored = np.concatenate([target[..., :half, :], -target[..., :half, :], 0.0 * target[..., 2 * half:, :]], axis=-2)
    target = np.where(scale_family[:, None, None], mirrored, target)
    prompt = np.where(scale_family[:, None, None], (1.0 + t[:, None, None]) * target,
                      target + t[:, None, None] * direction[:, None, :])
    return PairBatch(cap_logits(wk, target, prompt), wv, target, prompt, np.where(scale_family, "scale", "shift"))


def draw_pairs(key, shape, size: int) -> PairBatch:
    d, dk, dv, n = shape
    normal, uniform = draw_normals(key, size, dk * d + dv * d + n * d + d, 3)
    parts = np.split(normal, np.cumsum([dk * d, dv * d, n * d]), axis=1)
    wk = parts[0].reshape(size, dk, d) * (0.1 + 1.9 * uniform[:, 0])[:, None, None] / math.sqrt(d)
    wv = parts[1].reshape(size, dv, d) / math.sqrt(d)
    target = parts[2].reshape(size, n, d)
    direction = parts[3] / np.linalg.norm(parts[3], axis=1, keepdims=True)
    return _build(wk, wv, target, direction, uniform[:, 1] < 0.5, 0.05 + 2.95 * uniform[:, 2])


@dataclasses.dataclass(frozen=True)
class PairCase:
    """One Hypothesis-drawn case (all arrays from ``standard_normal_pool(seed)``)."""

    seed: int
    shape: tuple[int, int, int, int]
    family: str      # "scale": 𝒬 = (1 + t) 𝒟, 𝒟 mirrored about 0 (exactly equal means); "shift": 𝒬 = 𝒟 + t u
    t: float
    scale: float     # W^K entries ~ N(0, scale^2 / d)

    def build(self) -> PairBatch:
        d, dk, dv, n = self.shape
        sizes = [dk * d, dv * d, n * d, d]
        parts = np.split(standard_normal_pool(self.seed, sum(sizes)), np.cumsum(sizes)[:-1])
        wk = parts[0].reshape(1, dk, d) * self.scale / math.sqrt(d)
        return _build(wk, parts[1].reshape(1, dv, d) / math.sqrt(d), parts[2].reshape(1, n, d),
                      (parts[3] / np.linalg.norm(parts[3]))[None], np.array([self.family == "scale"]),
                      np.array([self.t]))

    def describe(self) -> dict:
        return dataclasses.asdict(self)


def pair_cases():
    return st.builds(PairCase, seed=st.integers(0, 2**31 - 1), shape=st.sampled_from(SHAPES),
                     family=st.sampled_from(("scale", "shift")), t=st.floats(0.05, 3.0), scale=st.floats(0.1, 2.0))


@jax.jit
def library_pairs(wk, wv, target, prompt, bandwidths):
    """Per case (vmapped): ``log ||ΔW||^2`` and its condition, and the unnormalised ``MMD^2`` of every kernel."""
    def one(wk, wv, target, prompt, bandwidths):
        weights = ik.AttentionWeights(wk, wk, wv)
        hs = ik.hs_norm(ik.distilled_weight_difference(weights, target, prompt, log_eta=LOG_HALF))
        out = {"log_dw2": hs.log_value, "cond_dw": hs.condition,
               "linear": ik.mmd2(target, prompt, ik.linear_kernel()),
               CONTROL: ik.mmd2(target, prompt, ik.product_kernel(wk))}
        for i, name in enumerate(BANDWIDTH_KERNELS):
            kernel = ik.rbf_kernel if KERNELS[name][0] == "rbf" else ik.laplace_kernel
            out[name] = ik.mmd2(target, prompt, kernel(bandwidth=bandwidths[i]))
        return out

    return jax.vmap(one)(wk, wv, target, prompt, bandwidths)


@dataclasses.dataclass(frozen=True)
class PairMeasure:
    """Per kernel (dicts of arrays over the batch): ``c_hat`` (library), ``c_hat_reference``, normalised ``mmd2``,
    ``zero`` (MMD^2 zero up to round-off), ``fails``, ``agreement`` (round-off units); per case ``certified``."""

    c_hat: dict
    c_hat_reference: dict
    mmd2: dict
    zero: dict
    fails: dict
    agreement: dict
    certified: np.ndarray
    bandwidths: dict
    median_agreement: np.ndarray
    dw_agreement: np.ndarray


def measure_pairs(batch: PairBatch, chunk: int, probed: dict | None = None) -> PairMeasure:
    """Every kernel on every case, library and reference. ``probed`` maps a kernel name to the name of the
    kernel actually evaluated for it (this check's mutant replaces every probed kernel by the control)."""
    probed = probed or {name: name for name in KERNELS}
    lib_medians = np.array([ik.median_bandwidth(jnp.asarray(t), jnp.asarray(p))
                            for t, p in zip(batch.target, batch.prompt, strict=False)])
    ref_medians = np.array([ref.median_bandwidth(t, p) for t, p in zip(batch.target, batch.prompt, strict=False)])
    multiples = np.array([KERNELS[name][1] for name in BANDWIDTH_KERNELS])
    lib = map_batches(library_pairs, (batch.wk, batch.wv, batch.target, batch.prompt,
                                      lib_medians[:, None] * multiples[None, :]), chunk)
    tokens = np.concatenate([batch.target, batch.prompt], axis=1)
    keys = np.einsum("bkd,bid->bik", batch.wk, tokens)
    key_norm2 = np.sum(keys * keys, axis=-1)
    log_mx = 0.5 * np.log(np.max(np.sum(tokens * tokens, axis=-1), axis=-1))
    log_mphi = 0.5 * np.max(key_norm2, axis=-1)
    normaliser = {"linear": -2 * log_mx, "product": -2 * (log_mx + log_mphi)}  # by kind: k0 <= 1 on the support
    ref_dw = ref.log_hs_norm2(*ref.weight_difference(batch.wk, batch.wv, batch.target, batch.prompt, LOG_HALF))
    dw_unit = OPERATIONS * eps(np.float64) * (1.0 + np.max(key_norm2, axis=-1))
    dw_agreement = log_agreement(lib["log_dw2"], ref_dw, dw_unit)
    log_wv_op = np.log(ref.operator_norm(batch.wv))
    certified = lib["cond_dw"] * 64 * eps(np.float64) < 0.5
    out = {f: {} for f in ("c_hat", "c_hat_reference", "mmd2", "zero", "fails", "agreement")}
    bandwidths = {}
    for name in KERNELS:
        evaluated = probed[name]
        kind, multiple = KERNELS[evaluated]
        params = {}
        if kind in ("rbf", "laplace"):
            params["bandwidth"] = multiple * ref_medians
            bandwidths[name] = multiple * lib_medians
        elif kind == "product":
            params["wk"] = batch.wk
        total = ref.log_mmd2(batch.target, batch.prompt, kind, **params)
        log_k = ref.log_gram(kind, tokens, tokens, **params)[1]
        worst_log = np.max(np.where(np.isfinite(log_k), np.abs(log_k), 0.0), axis=(1, 2))
        entry_scale = mmd_agreement.gram_round_off_scale(kind, tokens, tokens, log_k, wk=params.get("wk"),
                                                         log_unit=total.log_terms[:, None, None])
        weights = np.abs(ref.mmd2_weights(batch.target.shape[1], batch.prompt.shape[1]))
        lib_value = lib[evaluated]
        out["agreement"][name] = mmd_agreement_units(lib_value, total, worst_log,
                                                     np.sum(weights * entry_scale, axis=(1, 2)))
        shift = normaliser.get(kind, 0.0)
        mmd2 = lib_value * np.exp(shift)
        ref_mmd2 = total.sign * np.exp(total.log_abs + shift)
        zero = mmd2 <= ZERO_MMD2
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            base = 0.5 * lib["log_dw2"] - log_wv_op - log_mx - log_mphi
            c_hat = np.where(lib["log_dw2"] == -np.inf, 0.0,
                             np.where(mmd2 <= 0, np.inf, np.exp(base - 0.5 * np.log(np.abs(mmd2)))))
            c_ref = np.where(ref_mmd2 <= 0, np.inf,
                             np.exp(0.5 * ref_dw.log_abs - log_wv_op - log_mx - log_mphi - 0.5 * np.log(np.abs(ref_mmd2))))
        out["c_hat"][name], out["c_hat_reference"][name], out["mmd2"][name] = c_hat, c_ref, mmd2
        out["zero"][name] = zero
        out["fails"][name] = (c_hat > THRESHOLD) | (zero & certified)
    median_agreement = np.abs(lib_medians - ref_medians) / (OPERATIONS * eps(np.float64) * ref_medians)
    return PairMeasure(**out, certified=certified, bandwidths=bandwidths, median_agreement=median_agreement,
                       dw_agreement=dw_agreement)


def mmd_agreement_units(library_value, total: ref.LogSum, worst_log, entry_round_off=0.0) -> np.ndarray:
    """``|library - reference| / (64 eps [(1 + max|log k|) sum|terms| + sum_ij |w_ij| r_ij])`` per case
    (overflow-free), in units of ``sum|terms| = sum_ij |w_ij k_ij|``.

    The first term is the double sum's own round-off, and the exponent's where a tile is shifted by a bound
    ``>= max|log k|`` (``exp(L - shift)`` is off by ``eps |shift|`` relative). ``entry_round_off`` is
    ``sum_ij |w_ij| r_ij / sum|terms|`` with ``r_ij`` the entry's round-off scale
    (:func:`verification.cases.mmd_agreement.gram_round_off_scale`): a linear or product kernel's entry carries its dot
    product's ``eps sum_d |x_d y_d|``, which ``|k_ij|`` does not bound when the product cancels."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        diff = np.abs(np.asarray(library_value) * np.exp(-total.log_terms) - total.sign * np.exp(total.log_abs
                                                                                                 - total.log_terms))
        out = diff / (OPERATIONS * eps(np.float64) * (1.0 + worst_log + entry_round_off))
    out = np.where(total.log_terms == -np.inf, np.where(np.asarray(library_value) == 0, 0.0, np.inf), out)
    require_finite({"library MMD^2 against the reference": out}, allow_inf=True)
    return out


class Conjecture41(Check):
    id = "conj-4.1"
    kind = "conjecture"
    order = 430  # its place in the report: docs/statements.md order
    title = "||ΔW|| <= c MMD_k0 for a generic characteristic kernel k0 (paper's phrasing)"
    mutants = {
        "product-kernel-everywhere": "every probed kernel replaced by the normalised product kernel of Thm 4.1 "
                                     "(the conjecture must then survive: the status changes)",
    }

    @classmethod
    def statistical_judgements(cls, profile):
        return {"permutation-size": Judgement(1, 2, "mmd_permutation_test's size under the null = its exact level"),
                "permutation-power": Judgement(1, 1, "mmd_permutation_test's power at a shift of 3 sd >= 0.9")}

    def run(self, ctx: RunContext):
        smoke = ctx.profile.name == "smoke"
        per_shape = SMOKE_CASES if smoke else CASES_PER_SHAPE * ctx.profile.scale
        chunk = min(per_shape, CASES_PER_SHAPE)
        probed = dict.fromkeys(KERNELS, CONTROL) if ctx.mutant == "product-kernel-everywhere" else None
        start = time.perf_counter()
        batches = [draw_pairs(jax.random.fold_in(ctx.key, i), shape, per_shape) for i, shape in enumerate(SHAPES)]
        measured = [measure_pairs(b, chunk, probed) for b in batches]
        batched_s = time.perf_counter() - start

        def measure(case: PairCase):
            m = measure_pairs(case.build(), chunk, probed)
            return {name: bool(m.fails[name][0]) for name in KERNELS} | {
                "c_hat": {name: float(m.c_hat[name][0]) for name in KERNELS}}

        exploration = explore(pair_cases(), measure, max_examples=ctx.profile.examples,
                              seed_value=ctx.hypothesis_seed, fails=lambda m: m["linear"], shrink=ctx.shrink)
        # the library's other MMD machinery against the reference, on the first cases of the larger shape
        b = batches[-1]
        x, y = b.target[0], b.prompt[0][:-1]  # n != m
        library_checks = {f"gram {k}": v for k, v in mmd_agreement.gram_agreement(
            b.target[0], b.prompt[0], b.wk[0], float(ref.median_bandwidth(b.target[0], b.prompt[0]))).items()}
        library_checks["squared_distances"] = mmd_agreement.distance_agreement(b.target[0] + 5.0, b.prompt[0] + 5.0)
        library_checks.update(mmd_agreement.estimator_agreement(x, y))
        permutation = mmd_agreement.permutation_test(jax.random.fold_in(ctx.key, 7), 40 if smoke else 100,
                                                     ctx.level())

        per_kernel, counterexamples = {}, {}
        for name in KERNELS:
            c_hat = np.concatenate([m.c_hat[name] for m in measured])
            c_ref = np.concatenate([m.c_hat_reference[name] for m in measured])
            fails = np.concatenate([m.fails[name] for m in measured])
            agree = float(max(np.max(m.agreement[name]) for m in measured))
            hyp_refuted = any(meas[name] for _, meas in exploration.records)
            refuted = bool(fails.any()) or hyp_refuted
            finite = np.isfinite(c_hat) & ~np.concatenate([m.zero[name] for m in measured])
            sup_i = int(np.argmax(np.where(finite, c_hat, -np.inf))) if finite.any() else None
            per_kernel[name] = {
                "verdict": "refuted" if refuted else "survives", "refuted": refuted,
                "sup_c_hat": float(np.max(c_hat)), "sup_finite_c_hat": None if sup_i is None else float(c_hat[sup_i]),
                "reference_c_hat_at_sup": None if sup_i is None else float(c_ref[sup_i]),
                "max_agreement_in_round_off_units": agree, "agrees_with_reference": agree <= 1.0,
                "cases": int(c_hat.size) + exploration.cases, "counterexamples_in_batch": int(fails.sum()),
                "min_mmd2": float(np.min(np.concatenate([m.mmd2[name] for m in measured]))),
            }
            if fails.any():
                i = int(np.argmax(fails))
                shape_i, j = divmod(i, per_shape)
                m = measured[shape_i]
                bw = m.bandwidths[name][j] if name in m.bandwidths else None
                counterexamples[name] = {**batches[shape_i].case(j, name, bw), "c_hat": float(m.c_hat[name][j]),
                                         "mmd2": float(m.mmd2[name][j]), "mmd_zero": bool(m.zero[name][j]),
                                         "dw_certified": bool(m.certified[j]),
                                         "mean_difference": float(np.linalg.norm(
                                             batches[shape_i].target[j].mean(0) - batches[shape_i].prompt[j].mean(0)))}
        median = float(max(np.max(m.median_agreement) for m in measured))
        dw = float(max(np.max(m.dw_agreement) for m in measured))
        disagreements = [n for n, v in per_kernel.items() if not v["agrees_with_reference"]]
        disagreements += [k for k, v in library_checks.items() if v > 1.0]
        disagreements += ["median_bandwidth"] * (median > 1.0) + ["hs_norm of ΔW"] * (dw > 1.0)
        disagreements += ["mmd_permutation_test"] * (not permutation.ok)
        probed_refuted = [n for n, v in per_kernel.items() if v["refuted"] and n != CONTROL]
        survivors = [n for n, v in per_kernel.items() if not v["refuted"]]
        if disagreements:
            status = "violated"
        elif per_kernel[CONTROL]["refuted"]:
            status = "inconclusive"  # Theorem 4.1 would be false: nothing can be concluded about the others
        else:
            status = "refuted" if probed_refuted else "survives"
        worst_survivor = max((per_kernel[n]["sup_c_hat"] for n in survivors), default=None)
        headline = "linear" if "linear" in counterexamples else (probed_refuted[0] if probed_refuted else None)
        counterexample = None
        if exploration.counterexample is not None:
            case, _ = exploration.counterexample
            counterexample = {"kernel": "linear", "source": "hypothesis (shrunk)", "case": case.describe(),
                              **counterexamples.get("linear", {})}
        elif headline is not None and headline in counterexamples:
            counterexample = {"source": "batched draws", **counterexamples[headline]}
        worst_case = None
        if headline is not None and headline in counterexamples:
            worst_case = {k: v for k, v in counterexamples[headline].items()
                          if k in ("kernel", "wk", "wv", "target", "prompt", "log_eta", "bandwidth", "threshold")}
        fmt = lambda v: "none" if v is None else f"{v:.4g}"  # noqa: E731
        summary = (f"refuted for {', '.join(probed_refuted) or 'no kernel'}; survives for "
                   f"{', '.join(survivors) or 'no kernel'} (largest surviving c_hat {fmt(worst_survivor)}; control sup "
                   f"{fmt(per_kernel[CONTROL]['sup_c_hat'])} <= 1); library = reference for every kernel")
        if disagreements:
            summary = f"VIOLATED: the library disagrees with the reference on {', '.join(disagreements)}; " + summary
        elif status == "inconclusive":
            summary = "inconclusive: the control (Theorem 4.1's kernel) is refuted; " + summary
        cases = sum(b.size for b in batches) + exploration.cases
        return self.result(
            ctx, status=status, cases=cases, worst=worst_survivor, worst_label="largest c_hat among surviving kernels",
            tolerance=THRESHOLD, tolerance_reason="c_hat > 1e3 (the control's supremum is 1) or MMD_k0^2 below "
                                                  "64 eps * 4 (zero up to round-off) with ΔW certified non-zero; "
                                                  "library = reference within 64 eps [(1 + max|log k|) sum|terms| "
                                                  "+ sum|w_ij| r_ij] (r_ij: the entry's round-off scale)",
            figures={"per_kernel": per_kernel, "threshold": THRESHOLD, "counterexamples": counterexamples,
                     "sup_c_hat_by_rbf_bandwidth": {KERNELS[n][1]: per_kernel[n]["sup_c_hat"]
                                                    for n in KERNELS if KERNELS[n][0] == "rbf"},
                     "library_checks_in_round_off_units": library_checks | {"median_bandwidth (batched)": median,
                                                                            "hs_norm of ΔW": dw},
                     "permutation_test": dataclasses.asdict(permutation), "disagreements": disagreements,
                     "cases_per_second": sum(b.size for b in batches) / batched_s},
            counterexample=counterexample, worst_case=worst_case, summary=summary)
