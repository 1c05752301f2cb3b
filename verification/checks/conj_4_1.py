"""conj-4.1: ||ΔW|| <= c MMD_{k0} for a generic characteristic kernel k0 (THEOREMS.md, Conjecture 4.1').

The paper's phrasing, ``||ΔW|| <= eta M_V M_x M_phi MMD`` with an unspecified kernel, is
probed with kernels bounded by 1 on the support, like the normalised ``k~`` of Theorem
4.1, through the normalised constant

    c_hat = ||ΔW||_HS / (2 eta ||W^V||_op M_x M_phi MMD_{k0}(𝒟, 𝒬)),

``M_x = max ||x||`` and ``M_phi = max exp(||W^K x||^2 / 2)`` over both samples (the sups
over the empirical supports). Kernels: linear (``x . x' / M_x^2``), Gaussian RBF at
0.1, 1, 10, 100 times the median heuristic, Laplace at 1 and 10 times the median, and
the CONTROL ``k~ = product_kernel(W^K) / (M_x M_phi)^2``, for which ``c_hat <= 1`` is
Theorem 4.1 (in unnormalised form ``c = 2 eta ||W^V||_op``): the control must survive.

Search: per kernel, Hypothesis over pairs of samples (𝒟 Gaussian from the pool, 𝒬 a
translation of 𝒟 or 𝒟 scaled about its empirical mean: equal means, different
covariance) with ``fails`` = ``c_hat > THRESHOLD`` or ``MMD_{k0}^2`` zero up to round-off
while ``ΔW`` is certified non-zero; a failing pair is shrunk to the smallest one.
A kernel is refuted by a failing pair; otherwise it survives with the largest
``c_hat`` found (a finite supremum found by a search is evidence, not a proof).

Round-off: the normalised kernels are <= 1 on the support, so the biased MMD^2 has an
absolute error below ``64 eps * 4``; below that it is zero. ``ΔW != 0`` is certified when
``hs_norm``'s condition times ``64 eps`` is < 1/2.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

import iclkd_jax as ik
from verification.reference import operator_norm
from verification.registry import Check, RunContext, register
from verification.search import explore
from verification.strategies import standard_normal_pool
from verification.tolerances import eps

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
ZERO_MMD2 = 64.0 * eps(np.float64) * 4.0


@dataclasses.dataclass(frozen=True)
class PairCase:
    seed: int
    shape: tuple[int, int, int, int]
    family: str      # "scale": 𝒬 = mean + (1 + t)(𝒟 - mean); "shift": 𝒬 = 𝒟 + t u
    t: float
    scale: float     # W^K entries ~ N(0, scale^2 / d)

    def build(self):
        d, dk, dv, n = self.shape
        sizes = [dk * d, dv * d, n * d, d]
        parts = np.split(standard_normal_pool(self.seed, sum(sizes)), np.cumsum(sizes)[:-1])
        wk = parts[0].reshape(dk, d) * self.scale / math.sqrt(d)
        wv = parts[1].reshape(dv, d) / math.sqrt(d)
        target = parts[2].reshape(n, d)
        if self.family == "scale":
            mean = target.mean(axis=0)
            prompt = mean + (1.0 + self.t) * (target - mean)
        else:
            prompt = target + self.t * parts[3] / np.linalg.norm(parts[3])
        return wk, wv, target, prompt

    def describe(self) -> dict:
        return dataclasses.asdict(self)


def pair_cases():
    return st.builds(PairCase, seed=st.integers(0, 2**31 - 1), shape=st.sampled_from(SHAPES),
                     family=st.sampled_from(("scale", "shift")), t=st.floats(0.05, 3.0), scale=st.floats(0.1, 2.0))


@functools.lru_cache(maxsize=4096)
def weight_side(case: PairCase) -> dict:
    """``||ΔW||``, its certification and the normalisers of one case (shared by all kernels)."""
    wk, wv, target, prompt = case.build()
    weights = ik.AttentionWeights(jnp.asarray(wk), jnp.asarray(wk), jnp.asarray(wv))
    hs = ik.hs_norm(ik.distilled_weight_difference(weights, jnp.asarray(target), jnp.asarray(prompt), eta=0.5))
    tokens = np.concatenate([target, prompt])
    keys = tokens @ wk.T
    return {"log_dw": 0.5 * float(hs.log_value), "certified": float(hs.condition) * 64 * eps(np.float64) < 0.5,
            "log_2eta_mv": math.log(operator_norm(wv)),  # 2 eta = 1
            "log_mx": math.log(float(np.max(np.linalg.norm(tokens, axis=1)))),
            "log_mphi": 0.5 * float(np.max(np.sum(keys * keys, axis=1))),
            "median": ik.median_bandwidth(target, prompt)}


def normalised_mmd2(kernel_name: str, case: PairCase, side: dict) -> float:
    """``MMD_{k0}^2`` (biased) with ``k0 <= 1`` on the support."""
    kind, multiple = KERNELS[kernel_name]
    wk, _, target, prompt = case.build()
    x, y = jnp.asarray(target), jnp.asarray(prompt)
    if kind == "linear":
        return float(ik.mmd2(x, y, ik.linear_kernel())) * math.exp(-2 * side["log_mx"])
    if kind == "rbf":
        return float(ik.mmd2(x, y, ik.rbf_kernel(bandwidth=multiple * side["median"])))
    if kind == "laplace":
        return float(ik.mmd2(x, y, ik.laplace_kernel(bandwidth=multiple * side["median"])))
    return float(ik.mmd2(x, y, ik.product_kernel(jnp.asarray(wk)))) * math.exp(
        -2 * (side["log_mx"] + side["log_mphi"]))


def measure_kernel(kernel_name: str, case: PairCase) -> dict:
    side = weight_side(case)
    mmd2 = normalised_mmd2(kernel_name, case, side)
    zero = mmd2 <= ZERO_MMD2
    if side["log_dw"] == -math.inf:
        c_hat = 0.0
    elif mmd2 <= 0:
        c_hat = math.inf
    else:
        c_hat = math.exp(side["log_dw"] - side["log_2eta_mv"] - side["log_mx"] - side["log_mphi"]
                         - 0.5 * math.log(mmd2))
    return {"c_hat": c_hat, "mmd2": mmd2, "mmd_zero": zero, "dw_certified": side["certified"],
            "dw_normalised": math.exp(side["log_dw"] - side["log_2eta_mv"] - side["log_mx"] - side["log_mphi"])}


def fails(m: dict) -> bool:
    return m["c_hat"] > THRESHOLD or (m["mmd_zero"] and m["dw_certified"])


@register
class Conjecture41(Check):
    id = "conj-4.1"
    kind = "conjecture"
    title = "||ΔW|| <= c MMD_k0 for a generic characteristic kernel k0 (paper's phrasing)"
    mutants = {
        "product-kernel-everywhere": "every probed kernel replaced by the normalised product kernel of Thm 4.1 "
                                     "(the conjecture must then survive: the status changes)",
    }

    def run(self, ctx: RunContext):
        per_kernel, counterexamples, cases = {}, {}, 0
        for name in KERNELS:
            probed = "product (control)" if ctx.mutant == "product-kernel-everywhere" else name
            exploration = explore(pair_cases(), functools.partial(measure_kernel, probed),
                                  max_examples=ctx.profile.examples * ctx.profile.scale,
                                  seed_value=ctx.hypothesis_seed, fails=fails, shrink=ctx.shrink)
            cases += exploration.cases
            ms = exploration.measurements
            finite = [m["c_hat"] for m in ms if math.isfinite(m["c_hat"])]
            refuted = exploration.counterexample is not None
            per_kernel[name] = {"sup_c_hat": max(m["c_hat"] for m in ms), "sup_finite_c_hat": max(finite, default=None),
                                "refuted": refuted, "cases": exploration.cases,
                                "min_mmd2": min(m["mmd2"] for m in ms)}
            if refuted:
                case, m = exploration.counterexample
                wk, wv, target, prompt = case.build()
                counterexamples[name] = {
                    "case": case.describe(), **m,
                    "target": target.tolist(), "prompt": prompt.tolist(), "wk": wk.tolist(), "wv": wv.tolist(),
                    "mean_difference": float(np.linalg.norm(target.mean(axis=0) - prompt.mean(axis=0))),
                }
        probed_refuted = [n for n, v in per_kernel.items() if v["refuted"] and n != "product (control)"]
        control = per_kernel["product (control)"]
        if control["refuted"]:  # Theorem 4.1 would be false: nothing can be concluded about the others
            status = "inconclusive"
        else:
            status = "refuted" if probed_refuted else "survives"
        first = counterexamples.get("linear") or (counterexamples[probed_refuted[0]] if probed_refuted else None)
        worst_survivor = max((v["sup_c_hat"] for n, v in per_kernel.items() if not v["refuted"]), default=None)
        counterexample = None
        if first is not None:
            counterexample = {"kernel": "linear" if "linear" in counterexamples else probed_refuted[0], **first,
                              "others": {n: c for n, c in counterexamples.items() if c is not first}}
        summary = (f"refuted for {', '.join(probed_refuted)}; survives for "
                   f"{', '.join(n for n, v in per_kernel.items() if not v['refuted'])} "
                   f"(largest c_hat {worst_survivor:.3g}; control sup {control['sup_c_hat']:.4g} <= 1)"
                   if status == "refuted" else
                   f"{status}: largest c_hat {worst_survivor:.4g} over all kernels; control sup "
                   f"{control['sup_c_hat']:.4g}")
        return self.result(
            ctx, status=status, cases=cases, worst=worst_survivor, worst_label="largest c_hat among surviving kernels",
            tolerance=THRESHOLD, tolerance_reason="c_hat > 1e3 (the control's supremum is 1) or MMD_k0^2 below "
                                                  "64 eps * 4 (zero up to round-off) with ΔW certified non-zero",
            figures={"per_kernel": per_kernel, "threshold": THRESHOLD,
                     "sup_c_hat_by_rbf_bandwidth": {KERNELS[n][1]: per_kernel[n]["sup_c_hat"]
                                                    for n in KERNELS if KERNELS[n][0] == "rbf"}},
            counterexample=counterexample, summary=summary)
