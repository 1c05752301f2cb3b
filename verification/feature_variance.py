"""Per-feature relative variance of the random feature maps of exp(u.z) (THEOREMS.md, "Feature maps").

Shared by lemma-features and the tightness benchmark.
"""

from __future__ import annotations

import numpy as np


def per_feature_variance(kind: str, u, z):
    """Variance of one feature's estimate of ``exp(u.z)``, relative to ``exp(2 u.z)``.

    Positive random features (iid or orthogonal rows): ``exp(|u+z|^2) - 1``; trigonometric:
    ``exp(|u-z|^2) - 1 + exp(-|u-z|^2)/2`` (THEOREMS.md, feature maps 3 and 4). ``u, z`` are ``(..., d_k)``.
    """
    u, z = np.asarray(u, np.float64), np.asarray(z, np.float64)
    r2 = np.sum((u + z) ** 2, axis=-1)
    d2 = np.sum((u - z) ** 2, axis=-1)
    if kind == "trig":
        return np.exp(d2) - 1 + 0.5 * np.exp(-d2)
    return np.exp(r2) - 1
