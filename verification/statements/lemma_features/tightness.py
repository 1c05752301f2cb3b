"""The feature-map lemma's tightness cells (docs/statements.md#lemma-features; ``iclkd bench tightness``, docs/tightness.md)."""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

import iclkd_jax as ik
from verification.cases.sweeps import (
    draws_of,
    rms_ci,
    subkey,
)
from verification.core.protocol import TightnessCell
from verification.oracles.feature_variance import per_feature_variance
from verification.statements.lemma_features.check import TARGET_RELATIVE_ERROR


def predicted_rms(kind: str, u, z, m: int) -> float | None:
    """RMS relative error of ``phi(u).phi(z)`` for ``exp(u.z)`` with m iid features: ``sqrt(sigma^2 / m)``.

    ``sigma^2`` is lemma-features' per-feature relative variance (``exp(|u+z|^2) - 1`` positive,
    ``exp(|u-z|^2) - 1 + exp(-|u-z|^2)/2`` trig); orthogonal features have no closed form (None).
    """
    if kind == "orthogonal":
        return None
    return math.sqrt(float(per_feature_variance(kind, np.asarray(u), np.asarray(z))) / m)


@functools.cache
def _feature_fn(kind: str, m: int, dk: int):
    def one(key, u, z):
        if kind == "trig":
            fm = ik.trig_random_features(key, m, key_dim=dk, dtype=jnp.float64)
        else:
            fm = ik.positive_random_features(key, m, key_dim=dk, orthogonal=kind == "orthogonal", dtype=jnp.float64)
        est = (fm(u[None]) @ fm(z[None]).T)[0, 0]
        return est * jnp.exp(-jnp.dot(u, z)) - 1.0

    return one


def feature_pair(dk: int, sum_norm: float, diff_norm: float):
    """``u, z`` in R^{d_k} with ``|u+z| = sum_norm`` and ``|u-z| = diff_norm`` (orthogonal directions)."""
    e1, e2 = np.zeros(dk), np.zeros(dk)
    e1[0] = 1.0
    e2[min(1, dk - 1)] = 1.0
    s, dd = sum_norm * e1, diff_norm * e2
    return (s + dd) / 2, (s - dd) / 2




def compute(spec: dict, seed: int) -> dict:
    kind, m, dk = spec["kind"], spec["m"], spec["dk"]
    u, z = feature_pair(dk, spec["sum_norm"], spec["diff_norm"])
    key = subkey(seed, "lemma-features/draws", kind, m, dk, spec["sum_norm"], spec["diff_norm"])
    err = draws_of(_feature_fn(kind, m, dk), key, spec["draws"], jnp.asarray(u), jnp.asarray(z))
    r, lo, hi = rms_ci(err)
    pred = predicted_rms(kind, u, z, m)
    row = {"quantity": f"RMS relative error of phi(u).phi(z), {kind}", "feature_map": kind, "bound": pred,
           "observed": r, "observed_lo": lo, "observed_hi": hi, "mean_error": float(np.mean(err)),
           "|u+z|": spec["sum_norm"], "|u-z|": spec["diff_norm"], "m": m, "draws": int(err.size),
           "prediction_in_ci": None if pred is None else bool(lo <= pred <= hi)}
    if spec.get("target_error"):
        eps = spec["target_error"]
        # RMS ∝ m^{-1/2}: m needed for RMS = eps is m (RMS/eps)^2, with the CI carried through
        row.update({"quantity": f"features needed for RMS relative error {eps:g}, {kind}",
                    "bound": None if pred is None else m * (pred / eps) ** 2,
                    "observed": m * (r / eps) ** 2, "observed_lo": m * (lo / eps) ** 2,
                    "observed_hi": m * (hi / eps) ** 2, "rms_at_m": r,
                    "prediction_in_ci": None if pred is None else bool(lo <= pred <= hi)})
    return {"rows": [row], "raw": {"err": np.asarray(err).tolist()}}


#: the feature counts m, maps and |k+q| of each mode
MODES = {
    "tiny": {"m": [16], "kinds": ["positive"], "sum_norms": [1.0], "draws": 64, "m0": 16},
    "quick": {"m": [16, 64, 256, 1024, 4096], "kinds": ["positive", "orthogonal", "trig"],
              "sum_norms": [0.5, 1.0, 1.5, 2.0, 2.5], "draws": 1000, "m0": 256},
    "full": {"m": [16, 64, 256, 1024, 4096, 16384], "kinds": ["positive", "orthogonal", "trig"],
             "sum_norms": [0.5, 1.0, 1.5, 2.0, 2.5, 3.0], "draws": 4000, "m0": 1024},
}
BASE = {"dk": 4, "sum_norm": 1.0, "diff_norm": 0.5}


def cells(mode: str) -> list[TightnessCell]:
    """RMS relative error of random features against m (rate m^{-1/2}, a prediction), and the features
    needed for the check's target error as |k+q| grows."""
    c = MODES[mode]
    out = [TightnessCell(f"m ({kind})", m, {**BASE, "kind": kind, "m": m, "draws": c["draws"]}, compute,
                         kind="prediction") for kind in c["kinds"] for m in c["m"]]
    out += [TightnessCell("|k+q| (positive)", r, {**BASE, "kind": "positive", "m": c["m0"], "sum_norm": r, "diff_norm": 0.0,
                                                  "target_error": TARGET_RELATIVE_ERROR, "draws": c["draws"]},
                          compute, kind="prediction") for r in c["sum_norms"]]
    return out
