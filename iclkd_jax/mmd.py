"""Maximum mean discrepancy (docs/statements.md#conj-4-1, Theorems 4.1 and 4.2; Conjecture 4.1').

For samples ``x = (x_1..x_n)`` from P and ``y = (y_1..y_m)`` from Q and a kernel k:

* biased (V-statistic), the squared RKHS distance of the empirical mean embeddings,
  ``MMD_b^2 = (1/n^2) sum_ij k(x_i, x_j) + (1/m^2) sum_ij k(y_i, y_j) - (2/nm) sum_ij k(x_i, y_j) >= 0``;
* unbiased (U-statistic), the diagonals of the within-sample sums removed,
  ``MMD_u^2 = sum_{i!=j} k(x_i,x_j)/(n(n-1)) + sum_{i!=j} k(y_i,y_j)/(m(m-1)) - (2/nm) sum_ij k(x_i,y_j)``,
  which **can be negative**; it is returned as is (its square root is undefined).

Theorem 4.1 holds exactly for empirical measures with the biased form.

For exponential kernels every sum factors out its largest log-entry first (a max
shift), so logits of several hundred do not overflow the partial sums. Blocked
(the default above 256 rows, or with ``block_size``), the Gram matrices are never
formed: the sums run over ``block_size x block_size`` tiles (the symmetric
within-sample sums over the upper triangle of tiles only), with an online max shift,
so memory is O((n + m) d). The exponential kernels are summed as
``factor * exp(exponent - shift)`` with only the exponent shifted (for the product
kernel the factor is the bounded ``x . x'``), one exp per entry.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
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


# ------------------------------------------------------------------ kernel sums, tile by tile
#
# A sum sum_ij k(a_i, b_j) is computed from per-row data prepared once per sample (``_rows``),
# tile by tile (``_tile``). Each tile is either plain values (rbf, laplace, linear: bounded or
# non-overflowing entries) or, for the exponential kernels, ``k = factor * exp(exponent)`` with
# everything that can overflow in the exponent: the exp kernel has factor 1, the product kernel
# ``(x . x') exp((W^K x) . (W^K x'))`` has the bounded factor ``x . x'``. Only the exponent is
# max-shifted (no log of the linear factor, no sign array): one exp and one multiply per entry.


def _rows(kernel: Kernel, a: jax.Array, centre: jax.Array) -> tuple[jax.Array, ...]:
    """What a tile needs from the rows of ``a``, computed once (O(n d))."""
    if kernel.kind == "rbf":
        # ||a - b||^2 / (2 h^2) = |s_a|^2/2 + |s_b|^2/2 - s_a.s_b with s = (x - centre)/h: one matmul
        # per tile. Centring both samples on one centre (the mean of y) keeps the expansion's
        # cancellation at eps * spread^2 / h^2 (see squared_distances).
        bandwidth = jnp.asarray(kernel.params[0]).astype(a.dtype)
        scaled = (a - centre) / bandwidth
        return scaled, 0.5 * jnp.sum(scaled * scaled, axis=-1)
    if kernel.kind == "product":
        return a, a @ kernel.params[0].astype(a.dtype).T
    return (a,)


def _tile(kernel: Kernel, ra: tuple[jax.Array, ...], rb: tuple[jax.Array, ...]):
    """``(values, None)`` or, for exponential kernels, ``(factor or None, exponent)`` of one tile."""
    kind = kernel.kind
    if kind == "rbf":
        (sa, ha), (sb, hb) = ra, rb
        # the clip at 0 is the clip of negative squared distances from round-off
        return jnp.exp(jnp.minimum(sa @ sb.T - ha[:, None] - hb[None, :], 0.0)), None
    if kind == "product":
        (xa, ka), (xb, kb) = ra, rb
        return xa @ xb.T, ka @ kb.T
    if kind == "exp":
        return None, ra[0] @ rb[0].T
    return kernel(ra[0], rb[0]), None


def _masked_sum(values, exponent, keep, shift):
    """``sum_ij`` over one tile of ``values`` or of ``factor * exp(exponent - shift)``, entries outside ``keep`` dropped.

    ``exponent`` None: ``values`` are the kernel entries. Otherwise ``values`` is the factor
    (None: 1) and ``exponent`` already holds ``-inf`` outside ``keep``. Row sums first, then
    their sum: pairwise-like accuracy for large tiles.
    """
    if exponent is None:
        terms = values if keep is None else jnp.where(keep, values, 0.0)
    else:
        terms = jnp.exp(exponent - shift)
        if values is not None:
            terms = values * terms
    return jnp.sum(jnp.sum(terms, axis=1))


def _masked_tile(kernel: Kernel, ra, rb, keep):
    """``(values, exponent, max exponent)`` of one tile, the exponent masked to ``-inf`` outside ``keep``."""
    values, exponent = _tile(kernel, ra, rb)
    if exponent is None:
        return values, None, None
    if keep is not None:
        exponent = jnp.where(keep, exponent, -jnp.inf)
    return values, exponent, jnp.max(exponent)


def _dense_sum(kernel: Kernel, ra, rb, exclude_diagonal: bool):
    """(scaled sum, log shift) with sum_ij k(a_i, b_j) = scaled * exp(shift), one tile."""
    keep = ~jnp.eye(ra[0].shape[0], dtype=bool) if exclude_diagonal else None
    values, exponent, top = _masked_tile(kernel, ra, rb, keep)
    shift = jnp.zeros((), ra[0].dtype) if top is None else jnp.where(jnp.isfinite(top), top, 0.0)
    return _masked_sum(values, exponent, keep, shift), shift


def _combine(sums, coefficients):
    """sum_t coeff_t * scaled_t * exp(shift_t), factoring out the largest shift."""
    shifts = jnp.stack([s for _, s in sums])
    top = jnp.max(shifts)
    total = sum(c * scaled * jnp.exp(shift - top) for (scaled, shift), c in zip(sums, coefficients, strict=False))
    return total * jnp.exp(top)


def _coefficients(n: int, m: int, unbiased: bool):
    if unbiased:
        return (1.0 / (n * (n - 1)), 1.0 / (m * (m - 1)), -2.0 / (n * m))
    return (1.0 / n**2, 1.0 / m**2, -2.0 / (n * m))


@counted_jit(static_argnames=("unbiased",))
def _mmd2_dense(x, y, kernel, unbiased):
    centre = jnp.mean(y, axis=0)
    rx, ry = _rows(kernel, x, centre), _rows(kernel, y, centre)
    sums = [_dense_sum(kernel, rx, rx, unbiased), _dense_sum(kernel, ry, ry, unbiased), _dense_sum(kernel, rx, ry, False)]
    return _combine(sums, _coefficients(x.shape[0], y.shape[0], unbiased))


def _tiling(n: int, block_size: int) -> tuple[int, int]:
    """(number of tiles, rows per tile): balanced tiles of at most ``block_size`` rows.

    ``n = 10_000`` with ``block_size = 512`` gives 20 tiles of 500 rows (no padding)
    rather than 20 tiles of 512 with 240 padded rows.
    """
    blocks = -(-n // block_size)
    return blocks, -(-n // blocks)


def _pad_rows(a, blocks: int, tile: int):
    n = a.shape[0]
    if blocks * tile == n:
        return a
    return jnp.zeros((blocks * tile,) + a.shape[1:], a.dtype).at[:n].set(a)


def _blocked_sum(kernel: Kernel, ra, rb, block_size: int, symmetric: bool, exclude_diagonal: bool):
    """Tile-by-tile sum of k(a_i, b_j) with an online max shift (flash-attention style).

    ``ra``, ``rb`` are the prepared rows (:func:`_rows`). With ``symmetric`` (a is b) each
    unordered pair of tiles is computed once: over ``B`` tiles, row tile ``i`` meets tiles
    ``(i + s) mod B`` for ``s = 0..B//2`` (``s = 0`` is the diagonal tile; an off-diagonal
    pair counts twice, except ``s = B/2`` for even ``B``, which meets each pair from both
    sides and counts once each time). That is ``B (B//2 + 1)`` tiles, about half of ``B^2``;
    the tile indices are computed in the loop, so nothing of size ``B^2`` is stored. The
    running total is Kahan-compensated (float32 sums over ~10^6 tiles stay at rounding
    level) and rescaled whenever the running max shift grows.
    """
    n_a, n_b = ra[0].shape[0], rb[0].shape[0]
    blocks_a, tile_a = _tiling(n_a, block_size)
    blocks_b, tile_b = _tiling(n_b, block_size)
    a_pad = tuple(_pad_rows(r, blocks_a, tile_a) for r in ra)
    b_pad = a_pad if symmetric else tuple(_pad_rows(r, blocks_b, tile_b) for r in rb)
    if symmetric:
        steps = blocks_a // 2 + 1
        length = blocks_a * steps
    else:
        length = blocks_a * blocks_b
    local_a, local_b = jnp.arange(tile_a), jnp.arange(tile_b)
    dtype = ra[0].dtype
    needs_mask = exclude_diagonal or blocks_a * tile_a != n_a or blocks_b * tile_b != n_b

    def indices(t):
        if symmetric:
            i, s = t // steps, t % steps
            weight = jnp.where((s == 0) | (2 * s == blocks_a), 1.0, 2.0).astype(dtype)
            return i, (i + s) % blocks_a, weight
        return t // blocks_b, t % blocks_b, jnp.ones((), dtype)

    def tile(carry, _):
        t, total, comp, shift = carry
        i, j, weight = indices(t)
        a_tile = tuple(jax.lax.dynamic_slice_in_dim(r, i * tile_a, tile_a) for r in a_pad)
        b_tile = tuple(jax.lax.dynamic_slice_in_dim(r, j * tile_b, tile_b) for r in b_pad)

        def accumulate(keep):
            values, exponent, top = _masked_tile(kernel, a_tile, b_tile, keep)
            if exponent is None:
                new_shift, safe_shift, rescale = shift, shift, jnp.ones((), dtype)
            else:
                # the tile's entries are shifted by the running max including this tile (one max
                # reduction over the exponents), so exp(exponent - shift) <= 1 never overflows
                new_shift = jnp.maximum(shift, top)
                safe_shift = jnp.where(jnp.isfinite(new_shift), new_shift, 0.0)
                rescale = jnp.where(jnp.isfinite(shift), jnp.exp(shift - safe_shift), 0.0)
            return _masked_sum(values, exponent, keep, safe_shift), new_shift, rescale

        def masked():
            row_ids = i * tile_a + local_a
            col_ids = j * tile_b + local_b
            keep = (row_ids[:, None] < n_a) & (col_ids[None, :] < n_b)
            if exclude_diagonal:
                keep &= row_ids[:, None] != col_ids[None, :]
            return accumulate(keep)

        if needs_mask:
            # only tiles holding padding rows or diagonal entries need the mask (the others skip its
            # compare-and-select per entry: n = 10^4 in 384-row tiles is 27 tiles of 371, padded)
            edge = ((i == blocks_a - 1) & (blocks_a * tile_a != n_a)) | ((j == blocks_b - 1) & (blocks_b * tile_b != n_b))
            if exclude_diagonal:
                edge |= (i * tile_a < (j + 1) * tile_b) & (j * tile_b < (i + 1) * tile_a)
            contribution, new_shift, rescale = jax.lax.cond(edge, masked, lambda: accumulate(None))
        else:  # balanced tiles without padding and no diagonal to drop: every entry counts
            contribution, new_shift, rescale = accumulate(None)
        # Kahan summation of weight * contribution into total * rescale.
        total, comp = total * rescale, comp * rescale
        term = weight * contribution - comp
        new_total = total + term
        comp = (new_total - total) - term
        return (t + 1, new_total, comp, new_shift), None

    init_shift = jnp.asarray(0.0 if not kernel.exponential else -jnp.inf, dtype)
    zero = jnp.zeros((), dtype)
    (_, total, _, shift), _ = jax.lax.scan(tile, (jnp.zeros((), jnp.int32), zero, zero, init_shift), None,
                                           length=length)
    return total, jnp.where(jnp.isfinite(shift), shift, 0.0)


@counted_jit(static_argnames=("unbiased", "block_size"))
def _mmd2_blocked(x, y, kernel, unbiased, block_size):
    centre = jnp.mean(y, axis=0)
    rx, ry = _rows(kernel, x, centre), _rows(kernel, y, centre)
    sums = [
        _blocked_sum(kernel, rx, rx, block_size, True, unbiased),
        _blocked_sum(kernel, ry, ry, block_size, True, unbiased),
        _blocked_sum(kernel, rx, ry, block_size, False, False),
    ]
    return _combine(sums, _coefficients(x.shape[0], y.shape[0], unbiased))


#: Largest sample (rows) for which the default :func:`mmd2` call sums whole Gram matrices at once.
DENSE_MAX_ROWS = 256
#: The tile rows of the default call above :data:`DENSE_MAX_ROWS`.
DEFAULT_BLOCK_SIZE = 384


def default_block_size(n: int, m: int) -> int | None:
    """The ``block_size`` that :func:`mmd2` uses when none is given: ``None`` (dense) or a tile size.

    Dense (three whole Gram matrices, one fused XLA reduction each) when both samples have at
    most :data:`DENSE_MAX_ROWS` = 256 rows; tiles of :data:`DEFAULT_BLOCK_SIZE` = 384 rows
    above. Measured on the project's 2-core x86 CPU at d = 64, RBF and product kernels,
    float32 and float64 (docs/performance.md): up to 256 rows dense and tiled take the same
    time; from 384 rows tiling is faster (1.1-4.6x at 384-1024 rows: a dense n x n matrix
    leaves the caches, and the tiled path computes each symmetric within-sample sum once
    per pair of tiles), and it keeps memory O((n + m) d) instead of O(n^2 + m^2 + nm). At
    n = m = 10^4 (two interleaved runs on the shared, loaded machine) no tile size of
    256-512 rows was consistently fastest; 384 was within 1.4x of the best in every case
    and 128 was 1.5-5.7x slower. A 384-row tile is 576 KiB (float32) or 1.1 MiB (float64).
    """
    n = V.positive_int(n, "n")
    m = V.positive_int(m, "m")
    return None if max(n, m) <= DENSE_MAX_ROWS else DEFAULT_BLOCK_SIZE


def mmd2(x: ArrayLike, y: ArrayLike, kernel: Kernel, *, estimator: str = "biased",
         block_size: int | None = None) -> jax.Array:
    """Squared MMD between the samples ``x (n, d)`` and ``y (m, d)`` under ``kernel``.

    Without ``block_size`` the path is chosen by size (:func:`default_block_size`): dense
    for samples of at most 256 rows, blocked with 384-row tiles above, so the default call
    is the fast one and its memory is O((n + m) d) at any size.

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
        block_size = default_block_size(x.shape[0], y.shape[0])
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


class PermutationTestResult(NamedTuple):
    """Outcome of :func:`mmd_permutation_test`.

    Attributes:
      statistic: the observed MMD^2 (of the requested estimator), a scalar.
      p_value: ``(1 + #{b : T_b >= T_obs}) / (1 + B)``, exact-level under H0: P = Q
        (ties count against H0, so the test is conservative).
      permutation_statistics: ``T_b`` for the ``B`` random relabellings, ``(B,)``.
    """

    statistic: jax.Array
    p_value: jax.Array
    permutation_statistics: jax.Array


def _random_splits(key, num_splits: int, total_rows: int, n: int, dtype) -> jax.Array:
    """``(num_splits, total_rows)`` 0/1 labels, each row a uniformly random choice of ``n`` ones.

    Each row sorts i.i.d. random keys; the first ``n`` positions of the sorted order are
    the first sample. XLA:CPU sorts a single key array several times faster than keys
    with a payload, so with 64-bit types available (x64) the row index is packed into
    the low ``ceil(log2 N)`` bits of one uint64 key (>= 44 random bits above it: ties,
    which would fall back to index order, have probability ~ N^2 / 2^45). Without x64,
    two uint32 random keys and the index as payload (ties ~ N^2 / 2^65).
    """
    index_bits = max(1, (total_rows - 1).bit_length())
    rows = jnp.arange(num_splits)[:, None]
    if jax.config.jax_enable_x64 and index_bits <= 20:
        random = jax.random.bits(key, (num_splits, total_rows), jnp.uint64)
        packed = (random >> index_bits) << index_bits | jnp.arange(total_rows, dtype=jnp.uint64)
        order = (jax.lax.sort(packed, dimension=1) & ((1 << index_bits) - 1)).astype(jnp.int32)
    else:
        high, low = jax.random.bits(key, (2, num_splits, total_rows), jnp.uint32)
        index = jnp.broadcast_to(jnp.arange(total_rows, dtype=jnp.int32), (num_splits, total_rows))
        _, _, order = jax.lax.sort((high, low, index), dimension=1, num_keys=2)
    return jnp.zeros((num_splits, total_rows), dtype).at[rows, order[:, :n]].set(1.0)


@counted_jit(static_argnames=("n", "num_permutations", "unbiased"))
def _permutation_test(z, kernel, key, n, num_permutations, unbiased):
    total_rows = z.shape[0]
    m = total_rows - n
    dtype = z.dtype
    values, log_abs = _log_entries(kernel, z, z)
    if log_abs is None:
        gram, shift = values, jnp.zeros((), dtype)
    else:  # factor out the largest entry: the statistics scale by exp(shift), the p-value does not
        shift = jnp.max(log_abs)
        gram = values * jnp.exp(log_abs - shift)
    if unbiased:
        gram = gram * (1.0 - jnp.eye(total_rows, dtype=dtype))
    base = (jnp.arange(total_rows) < n).astype(dtype)
    labels = jnp.concatenate([base[None], _random_splits(key, num_permutations, total_rows, n, dtype)])
    # One (B + 1, N) x (N, N) product gives every statistic: with g the 0/1 labels of the
    # first sample and a = g/n - (1 - g)/m, MMD_b^2 = a^T K a.
    inv_n, inv_m = 1.0 / n, 1.0 / m
    kg = labels @ gram                                     # (B + 1, N): K g for each labelling
    row_sums = jnp.sum(gram, axis=0)                       # K 1
    coeffs = labels * (inv_n + inv_m) - inv_m              # a
    ka = kg * (inv_n + inv_m) - row_sums * inv_m           # K a
    quad = jnp.sum(ka * coeffs, axis=1)                    # a^T K a
    if unbiased:  # K has a zero diagonal here; the U-statistic differs from a^T K a by O(1/n) terms
        s_xx = jnp.sum(kg * labels, axis=1)
        s_yy = jnp.sum(row_sums) - 2.0 * (labels @ row_sums) + s_xx
        quad = quad + s_xx / (n * n * (n - 1.0)) + s_yy / (m * m * (m - 1.0))
    stats = quad * jnp.exp(shift)
    observed, permuted = stats[0], stats[1:]
    p_value = (1.0 + jnp.sum(quad[1:] >= quad[0])) / (num_permutations + 1.0)
    return PermutationTestResult(observed, p_value.astype(dtype), permuted)


def mmd_permutation_test(x: ArrayLike, y: ArrayLike, kernel: Kernel, *, key: jax.Array,
                         num_permutations: int = 1000, estimator: str = "biased") -> PermutationTestResult:
    """Permutation two-sample test of H0: P = Q with the MMD^2 statistic, from one Gram matrix.

    The Gram matrix ``K`` of the pooled sample ``z = [x; y]`` (``N = n + m`` rows) is
    computed once; each relabelling ``g`` (a uniformly random split of ``z`` into
    ``n`` and ``m`` points) has statistic ``a^T K a`` with ``a = g/n - (1-g)/m``
    (biased) or the corresponding U-statistic (unbiased, diagonal of ``K`` removed).
    All ``B`` statistics come from a single ``(B + 1, N) x (N, N)`` matrix product:
    ``O(B N^2)`` flops, ``O(N^2 + B N)`` memory, no Python loop. For exponential
    kernels ``K`` is scaled by its largest entry first (the p-value is invariant).

    Args:
      x, y: samples ``(n, d)`` and ``(m, d)``, same width and floating dtype.
      kernel: a :class:`~iclkd_jax.kernels.Kernel`.
      key: a ``jax.random.key``; the permutations are a deterministic function of it.
      num_permutations: ``B``, the number of random relabellings (static: changing
        it recompiles).
      estimator: ``"biased"`` or ``"unbiased"``; the observed statistic equals
        :func:`mmd2` with the same estimator up to round-off.

    Returns:
      :class:`PermutationTestResult`.
    """
    x, y = _validate_samples(x, y, kernel, estimator)
    num_permutations = V.positive_int(num_permutations, "num_permutations")
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ()):
        raise ValueError("key must be a single typed key from jax.random.key(seed)")
    z = jnp.concatenate([x, y])
    return _permutation_test(z, kernel, key, x.shape[0], num_permutations, estimator == "unbiased")
