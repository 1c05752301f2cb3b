"""Maximum mean discrepancy (THEOREMS.md, Theorems 4.1 and 4.2; Conjecture 4.1').

For samples ``x = (x_1..x_n)`` from P and ``y = (y_1..y_m)`` from Q and a kernel k:

* biased (V-statistic), the squared RKHS distance of the empirical mean embeddings,
  ``MMD_b^2 = (1/n^2) sum_ij k(x_i, x_j) + (1/m^2) sum_ij k(y_i, y_j) - (2/nm) sum_ij k(x_i, y_j) >= 0``;
* unbiased (U-statistic), the diagonals of the within-sample sums removed,
  ``MMD_u^2 = sum_{i!=j} k(x_i,x_j)/(n(n-1)) + sum_{i!=j} k(y_i,y_j)/(m(m-1)) - (2/nm) sum_ij k(x_i,y_j)``,
  which **can be negative**; it is returned as is (its square root is undefined).

Theorem 4.1 holds exactly for empirical measures with the biased form.

For exponential kernels every sum factors out its largest log-entry first (a max
shift), so logits of several hundred do not overflow the partial sums. With
``block_size`` set the Gram matrices are never formed: the sums run over
``block_size x block_size`` tiles (the symmetric within-sample sums over the upper
triangle of tiles only), with an online max shift, so memory is O((n + m) d).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from iclkd_jax import _validation as V
from iclkd_jax._compile import counted_jit
from iclkd_jax.kernels import Kernel

_ESTIMATORS = ("biased", "unbiased")


def _validate_samples(x, y, kernel, estimator):
    if not isinstance(kernel, Kernel):
        raise ValueError(f"kernel must be an iclkd_jax Kernel (e.g. rbf_kernel(bandwidth=1.0)), got {type(kernel).__name__}")
    if estimator not in _ESTIMATORS:
        raise ValueError(f"estimator must be one of {_ESTIMATORS}, got {estimator!r}")
    min_rows = 2 if estimator == "unbiased" else 1
    try:
        x = V.as_float_array(x, "x", ndim=2, min_rows=min_rows)
        y = V.as_float_array(y, "y", ndim=2, min_rows=min_rows, last_dim=x.shape[1])
    except ValueError as err:
        if estimator == "unbiased" and "at least 2 row" in str(err):
            raise ValueError(f"the unbiased estimator needs at least 2 samples per side: {err}") from None
        raise
    V.check_same_dtype(x=x, y=y)
    kernel.validate_inputs(x, y)
    return x, y


def _log_entries(kernel: Kernel, a: jax.Array, b: jax.Array):
    if kernel.exponential:
        return kernel.log_gram(a, b)
    gram = kernel(a, b)
    return gram, None


def _dense_sum(kernel: Kernel, a, b, exclude_diagonal: bool):
    """(scaled sum, log shift) with sum_ij k(a_i, b_j) = scaled * exp(shift)."""
    values, log_abs = _log_entries(kernel, a, b)
    if exclude_diagonal:
        off = ~jnp.eye(a.shape[0], dtype=bool)
    if log_abs is None:
        total = jnp.sum(jnp.where(off, values, 0.0)) if exclude_diagonal else jnp.sum(values)
        return total, jnp.zeros((), a.dtype)
    sign = values
    if exclude_diagonal:
        log_abs = jnp.where(off, log_abs, -jnp.inf)
    shift = jnp.max(log_abs)
    shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
    return jnp.sum(sign * jnp.exp(log_abs - shift)), shift


def _combine(sums, coefficients):
    """sum_t coeff_t * scaled_t * exp(shift_t), factoring out the largest shift."""
    shifts = jnp.stack([s for _, s in sums])
    top = jnp.max(shifts)
    total = sum(c * scaled * jnp.exp(shift - top) for (scaled, shift), c in zip(sums, coefficients))
    return total * jnp.exp(top)


def _coefficients(n: int, m: int, unbiased: bool, dtype):
    if unbiased:
        return (1.0 / (n * (n - 1)), 1.0 / (m * (m - 1)), -2.0 / (n * m))
    return (1.0 / n**2, 1.0 / m**2, -2.0 / (n * m))


@counted_jit(static_argnames=("unbiased",))
def _mmd2_dense(x, y, kernel, unbiased):
    sums = [_dense_sum(kernel, x, x, unbiased), _dense_sum(kernel, y, y, unbiased), _dense_sum(kernel, x, y, False)]
    return _combine(sums, _coefficients(x.shape[0], y.shape[0], unbiased, x.dtype))


def _pad_rows(a, block_size):
    n = a.shape[0]
    blocks = -(-n // block_size)
    padded = jnp.zeros((blocks * block_size, a.shape[1]), a.dtype).at[:n].set(a)
    return padded, blocks


def _blocked_sum(kernel: Kernel, a, b, block_size: int, symmetric: bool, exclude_diagonal: bool):
    """Tile-by-tile sum of k(a_i, b_j) with an online max shift (flash-attention style).

    With ``symmetric`` (a is b) only tiles (i, j) with j >= i are computed; the
    off-diagonal tiles count twice.
    """
    n_a, n_b = a.shape[0], b.shape[0]
    a_pad, blocks_a = _pad_rows(a, block_size)
    b_pad, blocks_b = _pad_rows(b, block_size)
    if symmetric:
        rows, cols = np.triu_indices(blocks_a)
    else:
        rows, cols = np.divmod(np.arange(blocks_a * blocks_b), blocks_b)
    weights = np.where(rows == cols, 1.0, 2.0) if symmetric else np.ones(rows.shape)
    pairs = (jnp.asarray(rows, jnp.int32), jnp.asarray(cols, jnp.int32), jnp.asarray(weights, a.dtype))
    local = jnp.arange(block_size)

    def tile(carry, pair):
        total, shift = carry
        i, j, weight = pair
        a_tile = jax.lax.dynamic_slice_in_dim(a_pad, i * block_size, block_size)
        b_tile = jax.lax.dynamic_slice_in_dim(b_pad, j * block_size, block_size)
        row_ids = i * block_size + local
        col_ids = j * block_size + local
        valid = (row_ids[:, None] < n_a) & (col_ids[None, :] < n_b)
        if exclude_diagonal:
            valid &= row_ids[:, None] != col_ids[None, :]
        values, log_abs = _log_entries(kernel, a_tile, b_tile)
        if log_abs is None:
            return (total + weight * jnp.sum(jnp.where(valid, values, 0.0)), shift), None
        log_abs = jnp.where(valid, log_abs, -jnp.inf)
        new_shift = jnp.maximum(shift, jnp.max(log_abs))
        safe_shift = jnp.where(jnp.isfinite(new_shift), new_shift, 0.0)
        rescale = jnp.where(jnp.isfinite(shift), jnp.exp(shift - safe_shift), 0.0)
        contribution = jnp.sum(jnp.where(valid, values * jnp.exp(log_abs - safe_shift), 0.0))
        return (total * rescale + weight * contribution, new_shift), None

    init_shift = jnp.asarray(0.0 if not kernel.exponential else -jnp.inf, a.dtype)
    (total, shift), _ = jax.lax.scan(tile, (jnp.zeros((), a.dtype), init_shift), pairs)
    return total, jnp.where(jnp.isfinite(shift), shift, 0.0)


@counted_jit(static_argnames=("unbiased", "block_size"))
def _mmd2_blocked(x, y, kernel, unbiased, block_size):
    sums = [
        _blocked_sum(kernel, x, x, block_size, True, unbiased),
        _blocked_sum(kernel, y, y, block_size, True, unbiased),
        _blocked_sum(kernel, x, y, block_size, False, False),
    ]
    return _combine(sums, _coefficients(x.shape[0], y.shape[0], unbiased, x.dtype))


def mmd2(x: ArrayLike, y: ArrayLike, kernel: Kernel, *, estimator: str = "biased",
         block_size: int | None = None) -> jax.Array:
    """Squared MMD between the samples ``x (n, d)`` and ``y (m, d)`` under ``kernel``.

    Args:
      x, y: samples, rows are points; same width and floating dtype.
      kernel: a :class:`~iclkd_jax.kernels.Kernel`.
      estimator: ``"biased"`` (V-statistic, >= 0 up to round-off) or ``"unbiased"``
        (U-statistic, may be negative, needs n, m >= 2).
      block_size: if set, never hold more than ``block_size x block_size`` of a Gram
        matrix (memory O((n + m) d)); the result equals the dense one up to
        summation order.

    Returns:
      A scalar of the inputs' dtype.
    """
    x, y = _validate_samples(x, y, kernel, estimator)
    unbiased = estimator == "unbiased"
    if block_size is None:
        return _mmd2_dense(x, y, kernel, unbiased)
    block_size = V.positive_int(block_size, "block_size")
    return _mmd2_blocked(x, y, kernel, unbiased, block_size)


def mmd(x: ArrayLike, y: ArrayLike, kernel: Kernel, *, block_size: int | None = None) -> jax.Array:
    """``sqrt(MMD_b^2)`` with the biased estimator (round-off negatives clipped to 0)."""
    return jnp.sqrt(jnp.maximum(mmd2(x, y, kernel, estimator="biased", block_size=block_size), 0.0))


@counted_jit(static_argnames=("unbiased",))
def _mmd2_features(fx, fy, unbiased):
    n, m = fx.shape[0], fy.shape[0]
    sum_x, sum_y = jnp.sum(fx, axis=0), jnp.sum(fy, axis=0)
    if not unbiased:
        diff = sum_x / n - sum_y / m
        return jnp.sum(diff * diff)
    within_x = (jnp.sum(sum_x * sum_x) - jnp.sum(fx * fx)) / (n * (n - 1))
    within_y = (jnp.sum(sum_y * sum_y) - jnp.sum(fy * fy)) / (m * (m - 1))
    return within_x + within_y - 2.0 * jnp.dot(sum_x, sum_y) / (n * m)


def mmd2_from_features(features_x: ArrayLike, features_y: ArrayLike, *, estimator: str = "biased") -> jax.Array:
    """MMD^2 for the kernel ``k(x, y) = <f(x), f(y)>`` of explicit features, in O((n + m) D).

    The biased form is ``||mean f(x) - mean f(y)||^2``; the unbiased form removes the
    diagonal terms ``||f(x_i)||^2`` from the within-sample sums exactly, so both
    equal :func:`mmd2` with the Gram matrix of the features.

    Args:
      features_x: ``(n, D)`` features of the first sample.
      features_y: ``(m, D)`` features of the second sample.
      estimator: ``"biased"`` or ``"unbiased"``.
    """
    if estimator not in _ESTIMATORS:
        raise ValueError(f"estimator must be one of {_ESTIMATORS}, got {estimator!r}")
    min_rows = 2 if estimator == "unbiased" else 1
    fx = V.as_float_array(features_x, "features_x", ndim=2, min_rows=min_rows)
    fy = V.as_float_array(features_y, "features_y", ndim=2, min_rows=min_rows, last_dim=fx.shape[1])
    V.check_same_dtype(features_x=fx, features_y=fy)
    return _mmd2_features(fx, fy, estimator == "unbiased")
