"""Per-feature relative variance of the random feature maps of exp(u.z) (docs/statements.md#feature-maps, "Feature maps").

Shared by lemma-features and the tightness benchmark.
"""

from __future__ import annotations

from verification.oracles import reference


def per_feature_variance(kind: str, u, z):
    """Variance of one feature's estimate of ``exp(u.z)``, relative to ``exp(2 u.z)``.

    Positive random features (iid or orthogonal rows): ``exp(|u+z|^2) - 1``; trigonometric:
    ``exp(|u-z|^2) - 1 + exp(-|u-z|^2)/2`` (docs/statements.md#feature-maps, feature maps 3 and 4). ``u, z`` are ``(..., d_k)``.
    """
    if kind == "trig":
        return reference.trig_feature_relative_variance(u, z)
    return reference.positive_feature_relative_variance(u, z)
