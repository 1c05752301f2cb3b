"""Positive-definite kernels as Gram-matrix callables (docs/statements.md#conj-4-1, Theorems 4.1, Conjecture 4.1').

A :class:`Kernel` is a pytree: its numeric parameters (bandwidth, W^K) are leaves, so
changing a bandwidth does not recompile a jitted caller; its ``kind`` is static.
``kernel(x, y)`` returns the ``(n, m)`` Gram matrix for rows ``x (n, d)`` and ``y (m, d)``.

Kernels built on exp (``exp_kernel``, ``product_kernel``) overflow for logits past
~88 (float32) or ~709 (float64); they also expose ``log_gram(x, y) -> (sign, log|k|)``
and are flagged ``exponential=True`` so that sums over them (MMD, Hilbert-Schmidt
norms) factor out the largest entry first.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from iclkd_jax import _validation as V

_KINDS = ("rbf", "laplace", "linear", "exp", "product")
_DIRECT_MAX = 2**18   # n * m * d up to which squared_distances uses explicit differences (memory n*m*d)
# The Laplace kernel takes a square root, which turns the expansion's ~eps |x|^2 residue on coincident
# points into ~sqrt(eps) |x|: it keeps exact differences up to a larger size, at O(n m d) cost.
_LAPLACE_DIRECT_MAX = 2**22


def squared_distances(x: jax.Array, y: jax.Array, *, direct_max: int | None = None) -> jax.Array:
    """Pairwise ``||x_i - y_j||^2`` via one matmul, without catastrophic cancellation.

    The expansion ``|x|^2 + |y|^2 - 2 x.y`` cancels when the points sit far from the
    origin relative to their spread (relative error ~ eps * |x|^2 / |x - y|^2). Both
    sets are first translated by a common centre (the mean of ``y``): distances are
    translation invariant, and after centring the norms are of the order of the
    spread, so the cancellation is bounded by eps * spread^2. Negative round-off is
    clipped at 0.

    When ``n * m * d <= direct_max`` (default ``2**18``: small Gram matrices and tiles,
    most test sizes) the distances are formed from explicit differences instead, which
    is exact for equal points; the expansion's residue ~eps |x - centre|^2 on coincident
    points would otherwise become ~sqrt(eps) in the Laplace kernel, which therefore
    uses ``2**22``. Above it, explicit differences would cost O(n m d) memory and time
    (10x slower at 256 x 256 tiles with d = 64).
    """
    limit = _DIRECT_MAX if direct_max is None else direct_max
    if x.shape[0] * y.shape[0] * x.shape[-1] <= limit:
        # explicit differences: relative error of a few eps for every pair, and exactly 0 for equal
        # points (the expansion leaves ~eps |x|^2 there, which sqrt turns into ~sqrt(eps) for Laplace)
        diff = x[:, None, :] - y[None, :, :]
        return jnp.sum(diff * diff, axis=-1)
    centre = jnp.mean(y, axis=0)
    xc, yc = x - centre, y - centre
    x_sq = jnp.sum(xc * xc, axis=-1)
    y_sq = jnp.sum(yc * yc, axis=-1)
    cross = xc @ yc.T
    return jnp.maximum(x_sq[:, None] + y_sq[None, :] - 2.0 * cross, 0.0)


@jax.tree_util.register_pytree_node_class
class Kernel:
    """A kernel ``k(x, y) -> (n, m)`` Gram matrix; see the module docstring.

    Build one with :func:`rbf_kernel`, :func:`laplace_kernel`, :func:`linear_kernel`,
    :func:`exp_kernel` or :func:`product_kernel` rather than directly.
    """

    def __init__(self, kind: str, params: tuple[Any, ...] = ()):
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.kind = kind
        self.params = tuple(params)

    # -- pytree protocol -------------------------------------------------------------
    def tree_flatten(self):
        return self.params, self.kind

    @classmethod
    def tree_unflatten(cls, kind, params):
        obj = object.__new__(cls)
        obj.kind = kind
        obj.params = tuple(params)
        return obj

    def __repr__(self) -> str:
        if self.kind in ("rbf", "laplace"):
            return f"{self.kind}_kernel(bandwidth={self.params[0]!r})"
        if self.kind == "product":
            return f"product_kernel(wk with shape {tuple(np.shape(self.params[0]))})"
        return f"{self.kind}_kernel()"

    @property
    def exponential(self) -> bool:
        """True when entries can overflow (exp of an unbounded inner product)."""
        return self.kind in ("exp", "product")

    def validate_inputs(self, x: jax.Array, y: jax.Array, names: tuple[str, str] = ("x", "y")) -> None:
        """Shape checks that depend on the kernel's parameters (the width of W^K)."""
        if self.kind == "product":
            wk = self.params[0]
            if not V.is_tracer(wk) and wk.shape[1] != x.shape[-1]:
                raise ValueError(
                    f"product_kernel: wk has shape {tuple(wk.shape)} but {names[0]} has shape "
                    f"{tuple(x.shape)}; wk must be (d_k, d) with d = {x.shape[-1]}")

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        kind = self.kind
        if kind == "rbf":
            bandwidth = jnp.asarray(self.params[0]).astype(x.dtype)  # a float64 bandwidth keeps float32 in float32
            return jnp.exp(-squared_distances(x, y) / (2.0 * bandwidth**2))
        if kind == "laplace":
            bandwidth = jnp.asarray(self.params[0]).astype(x.dtype)  # a float64 bandwidth keeps float32 in float32
            return jnp.exp(-jnp.sqrt(squared_distances(x, y, direct_max=_LAPLACE_DIRECT_MAX)) / bandwidth)
        if kind == "linear":
            return x @ y.T
        sign, log_abs = self.log_gram(x, y)
        return sign * jnp.exp(log_abs)

    def log_gram(self, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(sign, log|k(x_i, y_j)|)``, finite where ``k`` itself would overflow."""
        kind = self.kind
        if kind == "rbf":
            bandwidth = jnp.asarray(self.params[0]).astype(x.dtype)  # a float64 bandwidth keeps float32 in float32
            log_abs = -squared_distances(x, y) / (2.0 * bandwidth**2)
            return jnp.ones_like(log_abs), log_abs
        if kind == "laplace":
            bandwidth = jnp.asarray(self.params[0]).astype(x.dtype)  # a float64 bandwidth keeps float32 in float32
            log_abs = -jnp.sqrt(squared_distances(x, y, direct_max=_LAPLACE_DIRECT_MAX)) / bandwidth
            return jnp.ones_like(log_abs), log_abs
        if kind == "exp":
            log_abs = x @ y.T
            return jnp.ones_like(log_abs), log_abs
        if kind == "product":
            (wk,) = self.params
            wk = wk.astype(x.dtype)
            linear = x @ y.T
            return jnp.sign(linear), jnp.log(jnp.abs(linear)) + (x @ wk.T) @ (y @ wk.T).T
        linear = x @ y.T
        return jnp.sign(linear), jnp.log(jnp.abs(linear))


def rbf_kernel(*, bandwidth: ArrayLike) -> Kernel:
    """Gaussian RBF kernel ``k(x, y) = exp(-||x - y||^2 / (2 bandwidth^2))``.

    Characteristic on R^d; bounded by 1. Conjecture 4.1' probes it across bandwidths.
    """
    V.positive_scalar(bandwidth, "bandwidth")
    return Kernel("rbf", (jnp.asarray(bandwidth),))


def laplace_kernel(*, bandwidth: ArrayLike) -> Kernel:
    """Laplace kernel ``k(x, y) = exp(-||x - y|| / bandwidth)`` (Euclidean norm)."""
    V.positive_scalar(bandwidth, "bandwidth")
    return Kernel("laplace", (jnp.asarray(bandwidth),))


def linear_kernel() -> Kernel:
    """Linear kernel ``k(x, y) = x . y``; its MMD only compares means (not characteristic)."""
    return Kernel("linear")


def exp_kernel() -> Kernel:
    """The softmax kernel ``kappa(u, z) = exp(u . z)`` of docs/statements.md#notation (Notation)."""
    return Kernel("exp")


def product_kernel(wk: ArrayLike) -> Kernel:
    """Theorem 4.1's kernel ``k(x, x') = (x . x') exp((W^K x) . (W^K x'))``.

    It is the kernel of the feature ``x ⊗ phi(W^K x)`` in R^d ⊗ H, so its MMD is the
    distance between the mean embeddings that the distilled weights depend on.

    Args:
      wk: the key map W^K, shape ``(d_k, d)``.
    """
    wk = V.as_float_array(wk, "wk", ndim=2)
    return Kernel("product", (wk,))


def median_bandwidth(x: ArrayLike, y: ArrayLike | None = None, *, max_points: int = 1000) -> float:
    """Median heuristic: the median of pairwise Euclidean distances ``||z_i - z_j||``, i < j.

    Convention: the pooled sample ``z = [x; y]`` (or ``x`` alone), distances (not
    squared), distinct pairs only (the zero diagonal excluded), and the result is
    used as ``bandwidth`` of :func:`rbf_kernel` and :func:`laplace_kernel` as is
    (Gretton et al. 2012). At most ``max_points`` rows are used (the first ones,
    deterministically) to keep it O(max_points^2). Computed in NumPy float64, once,
    outside traced code.
    """
    x = V.as_float_array(x, "x", ndim=2, min_rows=1)
    pooled = np.asarray(x, dtype=np.float64)
    if y is not None:
        y = V.as_float_array(y, "y", ndim=2, min_rows=1, last_dim=x.shape[1])
        pooled = np.concatenate([pooled, np.asarray(y, dtype=np.float64)])
    if pooled.shape[0] < 2:
        raise ValueError(f"median_bandwidth needs at least 2 points, got pooled shape {pooled.shape}")
    pooled = pooled[:max_points]
    diffs = pooled[:, None, :] - pooled[None, :, :]
    dists = np.sqrt(np.sum(diffs * diffs, axis=-1))
    upper = dists[np.triu_indices(pooled.shape[0], k=1)]
    median = float(np.median(upper))
    if median <= 0:
        raise ValueError("median_bandwidth: the median pairwise distance is 0 (more than half the points coincide)")
    return median
