"""Conjecture 4.1's search targets (docs/statements.md#conj-4-1), ``iclkd search conj-4.1``.

``conj-4.1/<kernel>``: ``c_hat = ||ΔW|| / (2 eta ||W^V||_op M_x M_phi MMD_k0)`` per kernel and bandwidth
of the check.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from verification.search.ascent import SearchTarget
from verification.search.objectives import (
    as_arrays,
    as_lists,
    log_dw_and_mmd,
    log_op_norm,
    relative,
    shift_init,
    shift_parts,
    shift_project,
)
from verification.statements.conj_4_1.check import KERNELS, ZERO_MMD2, PairBatch, measure_pairs

# ----------------------------------------------------------------------------------------

SHAPE_CONJ = (4, 3, 3, 6)


def _pairwise_distances(z):
    """``||z_i - z_j||`` with a zero (and zero-gradient) diagonal: the double-where keeps sqrt' finite."""
    diff = z[:, None, :] - z[None, :, :]
    d2 = jnp.sum(diff * diff, axis=-1)
    positive = d2 > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0)


def _median_distance(z):
    n = z.shape[0]
    rows, cols = np.triu_indices(n, k=1)
    return jnp.median(_pairwise_distances(z)[rows, cols])


def targets(shape=SHAPE_CONJ) -> list[SearchTarget]:

    d, dk, dv, n = shape
    targets = []
    for name, (kind, multiple) in KERNELS.items():

        def log_c_hat(p, kind=kind, multiple=multiple):
            x, y = p["target"], p["prompt"]
            tokens, coef, keys, _ = shift_parts(p)
            log_dw, log_mmd_product = log_dw_and_mmd(p)
            log_mx = 0.5 * jnp.log(jnp.max(jnp.sum(tokens * tokens, axis=1)))
            log_mphi = 0.5 * jnp.max(jnp.sum(keys * keys, axis=1))
            if kind == "linear":
                diff = jnp.mean(y, axis=0) - jnp.mean(x, axis=0)
                mmd2 = jnp.sum(diff * diff) * jnp.exp(-2 * log_mx)
            elif kind == "product":
                mmd2 = jnp.exp(2 * (log_mmd_product - log_mx - log_mphi))
            else:
                dist = _pairwise_distances(tokens)
                h = multiple * _median_distance(tokens)
                gram = jnp.exp(-dist**2 / (2 * h**2)) if kind == "rbf" else jnp.exp(-dist / h)
                mmd2 = coef @ gram @ coef
            # an MMD^2 below round-off (the check's zero) counts as that floor: c_hat stays finite, and a pair
            # of nearly equal samples (both sides -> 0) is not rewarded for the round-off of its MMD
            return (log_dw - log_op_norm(p["wv"]) - log_mx - log_mphi
                    - 0.5 * jnp.log(jnp.maximum(mmd2, ZERO_MMD2)))

        def remeasure(p, name=name):
            q = as_arrays(p)
            batch = PairBatch(*(q[k][None] for k in ("wk", "wv", "target", "prompt")), np.array(["search"]))
            m = measure_pairs(batch, chunk=1)
            c_hat, ref = float(m.c_hat[name][0]), float(m.c_hat_reference[name][0])
            return {"ratio": c_hat, "reference_ratio": ref, "reference_agreement": relative(c_hat, ref),
                    "mmd2_normalised": float(m.mmd2[name][0]), "mmd_zero_within_round_off": bool(m.zero[name][0]),
                    "dw_certified_nonzero": bool(m.certified[0]),
                    "library_vs_reference_in_round_off_units": float(m.agreement[name][0]),
                    "mean_difference": float(np.linalg.norm(q["target"].mean(0) - q["prompt"].mean(0))),
                    "measured_by": "verification.statements.conj_4_1.check.measure_pairs"}

        slug = name.replace(" (control)", "-control")
        targets.append(SearchTarget(
            name=f"conj-4.1/{slug}",
            description=f"c_hat = ||ΔW|| / (2 eta ||W^V||_op M_x M_phi MMD_k0), k0 = {name}"
                        + (f" at {multiple} x the median bandwidth" if multiple else ""),
            init=shift_init((d, dk, dv, n, n)), objective=lambda p, f=log_c_hat: jnp.exp(f(p)),
            log_objective=log_c_hat, project=shift_project, remeasure=remeasure,
            describe=lambda p: {**as_lists(p), "eta": 0.5}, ratio_label="c_hat",
            bound=1.0 if kind == "product" else None))
    return targets
