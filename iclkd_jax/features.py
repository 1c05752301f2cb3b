"""Explicit feature maps of the softmax kernel ``kappa(u, z) = exp(u . z)`` (docs/statements.md#feature-maps, "Feature maps").

Each :class:`FeatureMap` maps key-space rows ``u (n, d_k)`` to features ``(n, m)`` with
``<phi(u), phi(z)> ≈ exp(u . z)``:

============================  =========================================  ==========  ======================
constructor                    kernel ``<phi(u), phi(z)>``                unbiased    error
============================  =========================================  ==========  ======================
``taylor_features(p)``         ``sum_{n<=p} (u.z)^n / n!`` (deterministic)  no (biased)  Taylor remainder of exp
``positive_random_features``   ``exp(u.z)`` in expectation               yes         var ∝ exp(2u.z)(exp(|u+z|^2)-1)/m
``trig_random_features``       ``exp(u.z)`` in expectation               yes         var grows like exp(|u|^2+|z|^2)
``identity_features()``        ``u . z`` (linear attention)              n/a         exact for the linear kernel
============================  =========================================  ==========  ======================

Random maps take an explicit ``jax.random`` key and hold their draw (``omega``,
``offset``) as pytree leaves, so the same key gives the same features.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from iclkd_jax import _validation as V
from iclkd_jax._compile import counted_jit

_KINDS = ("taylor", "positive", "trig", "identity")


@jax.tree_util.register_pytree_node_class
class FeatureMap:
    """An explicit feature map ``phi : R^{d_k} -> R^m``; call it on rows ``(n, d_k)``.

    Attributes:
      kind: ``"taylor"``, ``"positive"``, ``"trig"`` or ``"identity"``.
      unbiased: whether ``E <phi(u), phi(z)> = exp(u . z)`` exactly.
      order: the Taylor order (``None`` otherwise).
      omega, offset: the random draw (``None`` where unused).
    """

    def __init__(self, kind: str, *, key_dim: int, omega: Any = None, offset: Any = None, order: int | None = None):
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.kind, self.key_dim, self.order = kind, key_dim, order
        self.omega, self.offset = omega, offset

    def tree_flatten(self):
        return (self.omega, self.offset), (self.kind, self.key_dim, self.order)

    @classmethod
    def tree_unflatten(cls, aux, children):
        kind, key_dim, order = aux
        omega, offset = children
        return cls(kind, key_dim=key_dim, omega=omega, offset=offset, order=order)

    def __repr__(self) -> str:
        extra = f", order={self.order}" if self.kind == "taylor" else f", num_features={self.num_features}"
        return f"FeatureMap(kind={self.kind!r}, key_dim={self.key_dim}{extra})"

    @property
    def unbiased(self) -> bool:
        return self.kind in ("positive", "trig")

    @property
    def num_features(self) -> int:
        if self.kind == "taylor":
            return sum(self.key_dim**n for n in range(self.order + 1))
        if self.kind == "identity":
            return self.key_dim
        return self.omega.shape[0]

    def kernel(self, u: jax.Array, z: jax.Array) -> jax.Array:
        """The kernel this map reproduces exactly: ``<phi(u_i), phi(z_j)>``, ``(n, m)``."""
        return self(u) @ self(z).T

    def __call__(self, u: ArrayLike) -> jax.Array:
        if not V.is_tracer(u):
            u = V.as_float_array(u, "u", ndim=2, last_dim=self.key_dim)
        if self.kind == "identity":
            return u
        # one compiled program per (map, shape) instead of one per primitive of an eager call
        return _features(self, u)


@counted_jit
def _features(feature_map: FeatureMap, u: jax.Array) -> jax.Array:
    if feature_map.kind == "taylor":
        return _taylor(u, feature_map.order)
    omega = feature_map.omega.astype(u.dtype)
    m = omega.shape[0]
    half_sq_norm = 0.5 * jnp.sum(u * u, axis=-1, keepdims=True)
    projections = u @ omega.T
    if feature_map.kind == "positive":
        # m^{-1/2} exp(Ωu − |u|²/2), exponent formed before exp so it is finite whenever the feature is
        return jnp.exp(projections - half_sq_norm - 0.5 * math.log(m))
    offset = feature_map.offset.astype(u.dtype)
    return jnp.exp(half_sq_norm) * math.sqrt(2.0 / m) * jnp.cos(projections + offset)


def _taylor(u: jax.Array, order: int) -> jax.Array:
    blocks = [jnp.ones((u.shape[0], 1), u.dtype)]
    block = blocks[0]
    for n in range(1, order + 1):
        # u^{⊗n}/sqrt(n!) from u^{⊗(n-1)}/sqrt((n-1)!)
        block = (block[:, :, None] * u[:, None, :]).reshape(u.shape[0], -1) / math.sqrt(n)
        blocks.append(block)
    return jnp.concatenate(blocks, axis=-1)


def taylor_features(order: int, *, key_dim: int) -> FeatureMap:
    """Taylor truncation of order p: ``phi(u) = (u^{⊗n} / sqrt(n!))_{n=0..p}``.

    Kernel ``sum_{n<=p} (u.z)^n / n!``; deterministic and biased, with error at most the
    Taylor remainder of exp at ``|u.z|``, i.e. ``exp(|u.z|) |u.z|^{p+1} / (p+1)!``.
    Dimension ``sum_{n<=p} d_k^n``.
    """
    order = V.positive_int(order, "order", minimum=0)
    key_dim = V.positive_int(key_dim, "key_dim")
    if sum(key_dim**n for n in range(order + 1)) > 10_000_000:
        raise ValueError(f"taylor_features: order {order} with key_dim {key_dim} has more than 1e7 features")
    return FeatureMap("taylor", key_dim=key_dim, order=order)


def _haar_orthogonal(g: jax.Array) -> jax.Array:
    """A Haar-distributed orthogonal matrix from a Gaussian one (Mezzadri 2007).

    The raw ``Q`` of a QR decomposition is not Haar: LAPACK fixes the signs of
    ``diag(R)``, which makes e.g. the first entry of the first column of ``Q`` always
    negative, so the random features built from it were biased. Multiplying each
    column of ``Q`` by ``sign(R_ii)`` makes the factorisation unique and ``Q`` Haar.
    """
    q, r = jnp.linalg.qr(g)
    signs = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(g.dtype)
    return (q * signs[None, :]).T


def _gaussian_rows(key: jax.Array, num_features: int, key_dim: int, orthogonal: bool, dtype) -> jax.Array:
    if not orthogonal:
        return jax.random.normal(key, (num_features, key_dim), dtype)
    blocks = -(-num_features // key_dim)
    block_key, norm_key = jax.random.split(key)
    gaussians = jax.random.normal(block_key, (blocks, key_dim, key_dim), dtype)
    orthonormal = jax.vmap(_haar_orthogonal)(gaussians).reshape(-1, key_dim)[:num_features]
    # rows rescaled by chi(d_k) norms so each row is marginally N(0, I) (Choromanski et al. 2021)
    norms = jnp.linalg.norm(jax.random.normal(norm_key, (num_features, key_dim), dtype), axis=-1)
    return orthonormal * norms[:, None]


def _check_key(key: Any) -> None:
    if not isinstance(key, jax.Array) or not (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or key.shape == (2,)):
        raise ValueError(f"key must be a jax.random.key, got {type(key).__name__}")


def positive_random_features(key: jax.Array, num_features: int, *, key_dim: int, orthogonal: bool = False,
                             dtype: Any = None) -> FeatureMap:
    """Positive random features (FAVOR+): ``phi(u) = m^{-1/2} exp(Ωu − |u|²/2)``.

    Rows of Ω are ``N(0, I_{d_k})`` (with ``orthogonal=True``: orthogonal within blocks of
    ``d_k``, each rescaled by an independent chi norm, still marginally Gaussian).
    Unbiased: ``E <phi(u), phi(z)> = exp(u.z)``; per-feature variance
    ``exp(2u.z)(exp(|u+z|^2) − 1)`` (iid case), so the features needed for a fixed
    relative error grow like ``exp(|u+z|^2)``.
    """
    _check_key(key)
    num_features = V.positive_int(num_features, "num_features")
    key_dim = V.positive_int(key_dim, "key_dim")
    dtype = dtype or jnp.result_type(float)
    return FeatureMap("positive", key_dim=key_dim, omega=_gaussian_rows(key, num_features, key_dim, orthogonal, dtype))


def trig_random_features(key: jax.Array, num_features: int, *, key_dim: int, dtype: Any = None) -> FeatureMap:
    """Trigonometric random Fourier features of ``exp(u.z) = e^{|u|²/2} e^{|z|²/2} e^{-|u-z|²/2}``.

    ``phi(u) = e^{|u|²/2} sqrt(2/m) cos(Ωu + b)``, Ω rows ``N(0, I)``, ``b ~ U[0, 2π)``.
    Unbiased; unlike the positive map its features change sign, so estimates of
    ``exp(u.z)`` can be negative and their variance grows like ``exp(|u|² + |z|²)``.
    """
    _check_key(key)
    num_features = V.positive_int(num_features, "num_features")
    key_dim = V.positive_int(key_dim, "key_dim")
    dtype = dtype or jnp.result_type(float)
    omega_key, offset_key = jax.random.split(key)
    omega = jax.random.normal(omega_key, (num_features, key_dim), dtype)
    offset = jax.random.uniform(offset_key, (num_features,), dtype, 0.0, 2.0 * math.pi)
    return FeatureMap("trig", key_dim=key_dim, omega=omega, offset=offset)


def identity_features(*, key_dim: int) -> FeatureMap:
    """``phi(u) = u``: linear attention, kernel ``u.z`` (docs/statements.md#thm-linear, special case of 3.1)."""
    return FeatureMap("identity", key_dim=V.positive_int(key_dim, "key_dim"))
