"""Synthetic token distributions with exact norm bounds (docs/statements.md#thm-3-2, Theorems 3.2, 4.1, 4.2).

Bounded families carry ``radius = sup ||x||`` over their support, exactly. From it:

* ``value_bound(wv)`` = T >= sup ||W^V x|| (``||W^V||_op * radius``; attained for a
  centred ball or sphere, an upper bound otherwise);
* ``feature_bound(wk)`` = C >= sup ||phi(W^K x)|| = sup exp(||W^K x||^2 / 2) for the exact
  map (``exp((||W^K||_op radius)^2 / 2)``);
* ``M_x = radius`` and ``M_phi = feature_bound`` of Theorem 4.1.

Unbounded families (Gaussian, Student-t) have ``bounded = False``; asking them for a
bound raises :class:`UnboundedSupportError` with the reason (C = ∞), never a sample
maximum in disguise.

Shift families (``Q_t`` with ``Q_0 = base`` and an MMD growing from 0): :func:`shift_family`
(translation), :func:`scale_family` (same mean, covariance scaled: the linear-kernel
counterexample of Conjecture 4.1'), :func:`mixture_weight_family` (exactly linear).

Every draw takes an explicit ``jax.random`` key; ``sample(key, n)`` is deterministic in
``(key, n)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from iclkd_jax import _validation as V
from iclkd_jax.operators import operator_norm


class UnboundedSupportError(ValueError):
    """A check that needs bounded support (T, C < ∞) was given an unbounded distribution."""


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A token distribution on R^d.

    Attributes:
      name: a short description used in reports.
      dim: d.
      kind: ``"ball"``, ``"sphere"``, ``"truncated_gaussian"``, ``"mixture"``, ``"gaussian"``, ``"student_t"``.
      center: ``(d,)`` translation.
      scale: radius (ball, sphere), standard deviation (Gaussian families).
      truncation: the truncation radius of ``truncated_gaussian`` (around ``center``).
      components, weights: of a mixture.
      df: degrees of freedom of ``student_t``.
    """

    name: str
    dim: int
    kind: str
    center: tuple[float, ...]
    scale: float = 1.0
    truncation: float | None = None
    components: tuple[Distribution, ...] = ()
    weights: tuple[float, ...] = ()
    df: float | None = None

    # -- bounds ------------------------------------------------------------------------
    @property
    def bounded(self) -> bool:
        if self.kind == "mixture":
            return all(c.bounded for c in self.components)
        return self.kind in ("ball", "sphere", "truncated_gaussian")

    @property
    def radius(self) -> float:
        """``sup ||x||`` over the support (exact: ``||center|| + r``)."""
        self.require_bounded("radius")
        if self.kind == "mixture":
            return max(c.radius for c in self.components)
        r = self.truncation if self.kind == "truncated_gaussian" else self.scale
        return float(np.linalg.norm(self.center)) + r

    def require_bounded(self, what: str = "this check") -> None:
        if not self.bounded:
            raise UnboundedSupportError(
                f"{what} needs bounded support, but {self.name} ({self.kind}) is unbounded: "
                "sup ||x|| = ∞, so T = sup ||W^V x|| and C = sup exp(||W^K x||^2/2) are infinite and the "
                "bound is vacuous. Use a bounded family (uniform_ball, sphere, truncated_gaussian, mixture of these); "
                "a sample maximum is not a bound.")

    def value_bound(self, wv) -> float:
        """T = ``||W^V||_op * radius`` >= sup ||W^V x|| (Theorem 3.2)."""
        self.require_bounded("value_bound (T)")
        return operator_norm(wv) * self.radius

    def log_feature_bound(self, wk) -> float:
        """``log C`` = ``(||W^K||_op radius)^2 / 2`` (C overflows float64 past ~1e308)."""
        self.require_bounded("feature_bound (C)")
        return 0.5 * (operator_norm(wk) * self.radius) ** 2

    def feature_bound(self, wk) -> float:
        """C = ``exp((||W^K||_op radius)^2 / 2)`` >= sup ||phi(W^K x)|| for the exact map."""
        return math.exp(self.log_feature_bound(wk))

    # -- sampling ----------------------------------------------------------------------
    def sample(self, key: jax.Array, n: int, dtype=None) -> jax.Array:
        """``n`` i.i.d. draws, shape ``(n, dim)``."""
        n = V.positive_int(n, "n")
        dtype = dtype or jnp.result_type(float)
        return _sample(self, key, n, dtype)

    def shifted(self, shift: Sequence[float] | np.ndarray) -> Distribution:
        """The same law translated by ``shift`` (every component of a mixture alike)."""
        shift = np.asarray(shift, dtype=np.float64)
        if shift.shape != (self.dim,):
            raise ValueError(f"shift must have shape ({self.dim},), got {shift.shape}")
        if self.kind == "mixture":
            return dataclasses.replace(self, name=f"{self.name}+shift",
                                       components=tuple(c.shifted(shift) for c in self.components))
        return dataclasses.replace(self, name=f"{self.name}+shift",
                                   center=tuple(float(c) for c in np.asarray(self.center) + shift))

    @property
    def mean(self) -> np.ndarray:
        """``E[x]`` (float64 NumPy ``(dim,)``): every single family is symmetric about ``center``.

        Raises:
          ValueError: for a Student-t with ``df <= 1`` (no mean).
        """
        if self.kind == "mixture":
            return sum(w * c.mean for w, c in zip(self.weights, self.components, strict=False))
        if self.kind == "student_t" and self.df <= 1:
            raise ValueError(f"{self.name} has no mean (df = {self.df:g} <= 1)")
        return np.asarray(self.center, dtype=np.float64)

    def scaled(self, factor: float, about=None) -> Distribution:
        """The law of ``about + factor (x - about)`` (default ``about = mean``): same mean, covariance × factor².

        Every component of a mixture is scaled alike (centre and spread), so the
        mixture's mean is unchanged when ``about`` is its mean. Sampling the result with
        the key used for ``self`` gives the coupled draws ``about + factor (x - about)``.
        """
        V.positive_scalar(factor, "factor")
        about = self.mean if about is None else np.asarray(about, dtype=np.float64)
        if about.shape != (self.dim,):
            raise ValueError(f"about must have shape ({self.dim},), got {about.shape}")
        name = f"{self.name}*{float(factor):g}"
        if self.kind == "mixture":
            return dataclasses.replace(self, name=name,
                                       components=tuple(c.scaled(factor, about) for c in self.components))
        center = about + float(factor) * (np.asarray(self.center, dtype=np.float64) - about)
        truncation = None if self.truncation is None else self.truncation * float(factor)
        return dataclasses.replace(self, name=name, center=tuple(float(c) for c in center),
                                   scale=self.scale * float(factor), truncation=truncation)


def _unit_directions(key, n, dim, dtype):
    g = jax.random.normal(key, (n, dim), dtype)
    return g / jnp.linalg.norm(g, axis=-1, keepdims=True)


@functools.partial(jax.jit, static_argnames=("kind", "n", "dim", "dtype"))
def _sample_simple(key, center, scale, df, *, kind, n, dim, dtype):
    """One compiled sampler per (kind, n, dim, dtype): the parameters are traced, not baked in."""
    if kind == "sphere":
        return center + scale * _unit_directions(key, n, dim, dtype)
    if kind == "ball":
        dir_key, rad_key = jax.random.split(key)
        radii = scale * jax.random.uniform(rad_key, (n, 1), dtype) ** (1.0 / dim)
        return center + radii * _unit_directions(dir_key, n, dim, dtype)
    if kind == "gaussian":
        return center + scale * jax.random.normal(key, (n, dim), dtype)
    return center + scale * jax.random.t(key, df, (n, dim), dtype)


def _sample(dist: Distribution, key, n, dtype):
    center = jnp.asarray(dist.center, dtype)
    kind = dist.kind
    if kind in ("sphere", "ball", "gaussian", "student_t"):
        df = jnp.asarray(dist.df if dist.df is not None else 1.0, dtype)
        return _sample_simple(key, center, jnp.asarray(dist.scale, dtype), df, kind=kind, n=n, dim=dist.dim,
                              dtype=jnp.dtype(dtype))
    if kind == "truncated_gaussian":
        # rejection sampling in fixed-size rounds; the acceptance rate is reported by the error
        rows, accepted = [], 0
        for round_index in range(64):
            draw = dist.scale * jax.random.normal(jax.random.fold_in(key, round_index), (2 * n, dist.dim), dtype)
            keep = np.asarray(jnp.linalg.norm(draw, axis=-1) <= dist.truncation)
            rows.append(np.asarray(draw)[keep])
            accepted += int(keep.sum())
            if accepted >= n:
                return center + jnp.asarray(np.concatenate(rows)[:n], dtype)
        raise ValueError(f"truncated_gaussian: acceptance too low ({accepted} of {128 * n}); raise truncation/scale")
    if kind == "mixture":
        choice_key, *component_keys = jax.random.split(key, len(dist.components) + 1)
        labels = jax.random.choice(choice_key, len(dist.components), (n,), p=jnp.asarray(dist.weights, dtype))
        draws = jnp.stack([c.sample(k, n, dtype) for c, k in zip(dist.components, component_keys, strict=False)])
        return jnp.take_along_axis(draws, labels[None, :, None], axis=0)[0]
    raise ValueError(f"unknown distribution kind {kind!r}")


def _center(dim, center):
    dim = V.positive_int(dim, "dim")
    if center is None:
        return dim, (0.0,) * dim
    center = np.asarray(center, dtype=np.float64)
    if center.shape != (dim,) or not np.all(np.isfinite(center)):
        raise ValueError(f"center must be a finite vector of shape ({dim},), got shape {center.shape}")
    return dim, tuple(float(c) for c in center)


def uniform_ball(dim: int, *, radius: float = 1.0, center=None) -> Distribution:
    """Uniform on the ball ``{||x - center|| <= radius}``; sup ||x|| = ||center|| + radius."""
    dim, center = _center(dim, center)
    V.positive_scalar(radius, "radius")
    return Distribution(f"ball(d={dim}, r={radius:g})", dim, "ball", center, float(radius))


def sphere(dim: int, *, radius: float = 1.0, center=None) -> Distribution:
    """Uniform on the sphere ``{||x - center|| = radius}``."""
    dim, center = _center(dim, center)
    V.positive_scalar(radius, "radius")
    return Distribution(f"sphere(d={dim}, r={radius:g})", dim, "sphere", center, float(radius))


def truncated_gaussian(dim: int, *, std: float = 1.0, truncation: float = 2.0, center=None) -> Distribution:
    """``N(center, std^2 I)`` conditioned on ``||x - center|| <= truncation``."""
    dim, center = _center(dim, center)
    V.positive_scalar(std, "std")
    V.positive_scalar(truncation, "truncation")
    return Distribution(f"truncgauss(d={dim}, s={std:g}, R={truncation:g})", dim, "truncated_gaussian", center,
                        float(std), truncation=float(truncation))


def mixture(components: Sequence[Distribution], weights: Sequence[float] | None = None) -> Distribution:
    """A finite mixture; bounded iff every component is."""
    components = tuple(components)
    if not components or not all(isinstance(c, Distribution) for c in components):
        raise ValueError("components must be a non-empty sequence of Distribution")
    dims = {c.dim for c in components}
    if len(dims) != 1:
        raise ValueError(f"mixture components must share one dimension, got {sorted(dims)}")
    weights = np.full(len(components), 1.0 / len(components)) if weights is None else np.asarray(weights, float)
    if weights.shape != (len(components),) or np.any(weights < 0) or not np.isclose(weights.sum(), 1.0):
        raise ValueError(f"weights must be {len(components)} non-negative numbers summing to 1, got {weights}")
    dim = dims.pop()
    return Distribution("mixture(" + ", ".join(c.name for c in components) + ")", dim, "mixture",
                        (0.0,) * dim, components=components, weights=tuple(float(w) for w in weights))


def gaussian(dim: int, *, std: float = 1.0, center=None) -> Distribution:
    """``N(center, std^2 I)``: unbounded (C = ∞); bounded-support checks refuse it."""
    dim, center = _center(dim, center)
    V.positive_scalar(std, "std")
    return Distribution(f"gaussian(d={dim}, s={std:g})", dim, "gaussian", center, float(std))


def student_t(dim: int, *, df: float = 3.0, scale: float = 1.0, center=None) -> Distribution:
    """Heavy-tailed: i.i.d. Student-t coordinates with ``df`` degrees of freedom (unbounded)."""
    dim, center = _center(dim, center)
    V.positive_scalar(df, "df")
    V.positive_scalar(scale, "scale")
    return Distribution(f"student_t(d={dim}, df={df:g})", dim, "student_t", center, float(scale), df=float(df))


def shift_family(base: Distribution, direction, t: float) -> Distribution:
    """``Q_t``: ``base`` translated by ``t * direction / ||direction||`` (docs/statements.md#thm-4-1, Theorem 4.1).

    ``Q_0 = base``; MMD(base, Q_t) grows from 0, linearly in ``t`` for small ``t``.
    """
    direction = np.asarray(direction, dtype=np.float64)
    norm = np.linalg.norm(direction)
    if direction.shape != (base.dim,) or norm == 0:
        raise ValueError(f"direction must be a non-zero vector of shape ({base.dim},), got {direction.shape}")
    shifted = base.shifted(t * direction / norm)
    return dataclasses.replace(shifted, name=f"{base.name} shifted by t={t:g}")


def scale_family(base: Distribution, t: float) -> Distribution:
    """``Q_t``: ``base`` scaled by ``1 + t`` about its mean (docs/statements.md#conj-4-1, Theorem 4.1, Conjecture 4.1').

    Same mean for every ``t > -1``, covariance ``(1 + t)^2 Cov(base)``: the linear
    kernel's MMD is 0 along the whole family while the distilled weights move, the
    counterexample to Conjecture 4.1' with a linear kernel. ``Q_0 = base``; for a
    characteristic kernel the MMD grows from 0, linearly in small ``t``. Bounds stay
    exact: the radius becomes ``||mean + (1+t)(center - mean)|| + (1+t) r`` per component.
    """
    if not np.isfinite(t) or t <= -1:
        raise ValueError(f"t must be a finite number > -1 (the scale factor 1 + t must be positive), got {t!r}")
    scaled = base.scaled(1.0 + float(t))
    return dataclasses.replace(scaled, name=f"{base.name} scaled by 1+t, t={t:g}")


def mixture_weight_family(components: Sequence[Distribution], start: Sequence[float], end: Sequence[float],
                          t: float) -> Distribution:
    """``Q_t = mixture(components, (1 - t) start + t end)`` for ``t`` in [0, 1].

    The mean embedding of every kernel is affine in the weights, so
    ``MMD_k(Q_0, Q_t) = t MMD_k(Q_0, Q_1)`` and ``W̄(Q_t) - W̄(Q_0) = t (W̄(Q_1) - W̄(Q_0))``
    exactly: the linear growth of Theorem 4.1 with slope ratio independent of ``t``.
    """
    if not np.isfinite(t) or not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be in [0, 1], got {t!r}")
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    if start.shape != end.shape:
        raise ValueError(f"start and end weights must have one shape, got {start.shape} and {end.shape}")
    weights = (1.0 - float(t)) * start + float(t) * end
    mixed = mixture(components, weights)
    return dataclasses.replace(mixed, name=f"{mixed.name} weights at t={t:g}")
