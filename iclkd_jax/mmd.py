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

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from iclkd_jax import _validation as V
from iclkd_jax._compile import counted_jit
from iclkd_jax.kernels import _LAPLACE_DIRECT_MAX, Kernel

_ESTIMATORS = ("biased", "unbiased")


def _sample(a, name: str, min_rows: int, width: int | None, check_finite: bool) -> jax.Array:
    """``a`` as a validated ``(rows, width)`` floating array (:func:`iclkd_jax._validation.as_float_array`).

    ``check_finite=False``: a JAX array of the right rank, rows, width and dtype is taken as it is,
    without the host pass over its values that the finiteness check costs (two passes over the
    inputs, as long as the whole linear-kernel MMD^2): the caller checks finiteness inside its
    own computation instead (:func:`_inputs_finite`). Anything else (lists, NumPy arrays, a wrong
    shape) goes through ``as_float_array``, which converts it or raises the ``ValueError``.
    """
    if (not check_finite and isinstance(a, jax.Array) and a.ndim == 2 and a.shape[0] >= min_rows
            and a.shape[1] >= 1 and (width is None or a.shape[1] == width) and jnp.issubdtype(a.dtype, jnp.floating)):
        return a
    return V.as_float_array(a, name, ndim=2, min_rows=min_rows, last_dim=width)


def _validate_samples(x, y, kernel, estimator, *, check_finite: bool = True):
    if not isinstance(kernel, Kernel):
        raise ValueError(f"kernel must be an iclkd_jax Kernel (e.g. rbf_kernel(bandwidth=1.0)), got {type(kernel).__name__}")
    if estimator not in _ESTIMATORS:
        raise ValueError(f"estimator must be one of {_ESTIMATORS}, got {estimator!r}")
    min_rows = 2 if estimator == "unbiased" else 1
    try:
        x = _sample(x, "x", min_rows, None, check_finite)
        y = _sample(y, "y", min_rows, x.shape[1], check_finite)
    except ValueError as err:
        if estimator == "unbiased" and "at least 2 row" in str(err):
            raise ValueError(f"the unbiased estimator needs at least 2 samples per side: {err}") from None
        raise
    V.check_same_dtype(x=x, y=y)
    kernel.validate_inputs(x, y)
    return x, y


def _inputs_finite(x, y) -> jax.Array:
    """Whether every entry of ``x`` and ``y`` is finite: one fused pass, O((n + m) d) beside the O(n m d) sums.

    ``a - a`` is 0 for a finite entry and NaN for an infinite or NaN one (IEEE 754; XLA does not
    fold it for floats), so the sum of ``x - x`` and ``y - y`` is NaN exactly when an entry is not
    finite, and cannot overflow. ``all(isfinite(x))`` made XLA store a boolean copy of each input
    (1/4 of its size in float32) and ``sum(x * 0)`` a zero array of its size: this keeps 0 bytes.
    """
    return jnp.isfinite(jnp.sum(x - x) + jnp.sum(y - y))


def _log_entries(kernel: Kernel, a: jax.Array, b: jax.Array):
    if kernel.exponential:
        return kernel.log_gram(a, b)
    gram = kernel(a, b)
    return gram, None


# ------------------------------------------------------------------ kernel sums, tile by tile
#
# A sum sum_ij k(a_i, b_j) is computed from row arrays prepared once per sample (``_rows``) and a
# few numbers per row (``_row_data``, prepared per tile before the loop), tile by tile (``_tile``).
# Each tile is either plain values (rbf, laplace, linear: bounded or non-overflowing entries) or,
# for the exponential kernels, ``k = factor * exp(exponent)`` with everything that can overflow in
# the exponent: the exp kernel has factor 1, the product kernel ``(x . x') exp((W^K x) . (W^K x'))``
# has the bounded factor ``x . x'``. Only the exponent is shifted (no log of the linear factor, no
# sign array): one exp and one multiply per entry.
#
# The shift of a tile. Every exponent is an inner product ``e_ij = u_i . v_j`` (``u = W^K x`` for
# the product kernel, ``u = x`` for the exp kernel), so by Cauchy-Schwarz
#
#     -U <= e_ij <= U,   U = max_{i in tile} |u_i| * max_{j in tile} |v_j|,
#
# which costs O(n) once (row norms, then one maximum per tile of rows, before the loop). Shifted by U, every
# term ``exp(e_ij - U)`` lies in ``[exp(-2U), 1]``: no overflow, and while ``2U <= R`` with
# ``R = log(1 / smallest normal) - log(1 / eps)`` (71.4 in float32, 672 in float64) no term comes
# within a factor 1/eps of the underflow range, so each keeps its full relative precision. Such
# tiles (logits up to 35 / 336) skip the pass over the tile that an exact maximum would cost.
# Tiles with ``2U > R`` take the exact maximum of their exponents as the shift (a second pass).


def _exponent_range(dtype) -> float:
    """``R = log(1 / smallest normal) - log(1 / eps)``: terms down to ``exp(-R)`` keep full precision."""
    info = jnp.finfo(dtype)
    return float(-math.log(float(info.tiny)) + math.log(float(info.eps)))


def _scaled(kernel: Kernel, a: jax.Array, centre: jax.Array) -> jax.Array:
    """``(a - centre) / h`` for the distance kernels, computed tile by tile (never stored for a whole sample)."""
    return (a - centre) / jnp.asarray(kernel.params[0]).astype(a.dtype)


def _rows(kernel: Kernel, a: jax.Array) -> tuple[jax.Array, ...]:
    """The row arrays a tile slices: ``a`` itself and, for the product kernel, ``W^K a`` (``d_k / d`` of its size)."""
    if kernel.kind == "product":
        return a, a @ kernel.params[0].astype(a.dtype).T
    return (a,)


def _row_data(kernel: Kernel, rows: tuple[jax.Array, ...], centre: jax.Array) -> tuple[jax.Array, ...]:
    """The numbers per row a tile needs besides the rows: ``|s_i|^2 / 2`` (rbf), ``|s_i|^2`` (laplace), ``|u_i|`` (exp, product).

    ``s = (x - centre) / h``; ``u = W^K x`` for the product kernel, ``x`` for exp (the row norms give
    a tile's Cauchy-Schwarz bound). The tile loop prepares them once per tile of the sample before
    it starts (:func:`_blocked_sum`). Computed inside every step instead, each is a separate small
    computation in every step of the loop: 16-20 % of the time of a 500-row float64 RBF tile in a
    micro-benchmark (docs/performance.md).
    """
    if kernel.kind in ("rbf", "laplace"):
        s = _scaled(kernel, rows[0], centre)
        squared = jnp.sum(s * s, axis=-1)
        return (0.5 * squared,) if kernel.kind == "rbf" else (squared,)
    if kernel.exponential:
        return (jnp.sqrt(jnp.sum(rows[-1] * rows[-1], axis=-1)),)
    return ()


def _tile(kernel: Kernel, ra: tuple[jax.Array, ...], rb: tuple[jax.Array, ...], centre, same=None):
    """``(values, None)`` or, for exponential kernels, ``(factor or None, exponent)`` of one tile.

    ``centre``: the common centre of the distance kernels. ``same``: None, or a boolean tile
    marking the pairs that are one point (the diagonal of a within-sample sum), whose distance
    is then exactly 0.
    """
    kind = kernel.kind
    if kind in ("rbf", "laplace"):
        # ||a - b||^2 / h^2 = |s_a|^2 + |s_b|^2 - 2 s_a.s_b with s = (x - centre)/h: one matmul
        # per tile. Centring both samples on one centre (the mean of y) keeps the expansion's
        # cancellation at eps * spread^2 / h^2 (see squared_distances).
        sa, sb = _scaled(kernel, ra[0], centre), _scaled(kernel, rb[0], centre)
        qa, qb = ra[1], rb[1]
    if kind == "rbf":
        # No clip of the exponent at 0: the expansion's round-off, ~eps (|s_a|^2 + |s_b|^2), moves each
        # entry by that relative amount whichever its sign (a clip bounds the positive side at 1 but
        # gains no accuracy), and dropping it made the tile 4-5 % faster (docs/performance.md).
        return jnp.exp(sa @ sb.T - qa[:, None] - qb[None, :]), None
    if kind == "laplace":
        if sa.shape[0] * sb.shape[0] * sa.shape[1] <= _LAPLACE_DIRECT_MAX:
            # explicit differences (exact 0 for equal points): the sqrt turns the expansion's
            # ~eps |s|^2 residue on near-coincident points into ~sqrt(eps) |s|
            diff = sa[:, None, :] - sb[None, :, :]
            squared = jnp.sum(diff * diff, axis=-1)
        else:
            squared = jnp.maximum(qa[:, None] + qb[None, :] - 2.0 * (sa @ sb.T), 0.0)
            if same is not None:
                squared = jnp.where(same, 0.0, squared)
        return jnp.exp(-jnp.sqrt(squared)), None
    if kind == "product":
        (xa, ka, _), (xb, kb, _) = ra, rb
        return xa @ xb.T, ka @ kb.T
    if kind == "exp":
        return None, ra[0] @ rb[0].T
    return ra[0] @ rb[0].T, None


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


def _masked_tile(kernel: Kernel, ra, rb, keep, centre):
    """``(values, exponent, max exponent)`` of one tile, the exponent masked to ``-inf`` outside ``keep``."""
    values, exponent = _tile(kernel, ra, rb, centre)
    if exponent is None:
        return values, None, None
    if keep is not None:
        exponent = jnp.where(keep, exponent, -jnp.inf)
    return values, exponent, jnp.max(exponent)


def _finite_or_zero(shift):
    return jnp.where(jnp.isfinite(shift), shift, 0.0)


def _dense_sum(kernel: Kernel, ra, rb, centre, exclude_diagonal: bool):
    """(scaled sum, log shift) with sum_ij k(a_i, b_j) = scaled * exp(shift), one tile."""
    keep = ~jnp.eye(ra[0].shape[0], dtype=bool) if exclude_diagonal else None
    values, exponent, top = _masked_tile(kernel, ra, rb, keep, centre)
    shift = jnp.zeros((), ra[0].dtype) if top is None else _finite_or_zero(top)
    return _masked_sum(values, exponent, keep, shift), shift


#: ln 2 split so that ``q * hi`` is exact for the integers ``q`` met here (Cody and Waite)
_LN2_SPLIT = {"float32": (0.693145751953125, 1.428606765330187e-06),
              "float64": (6.93147180369123816490e-01, 1.90821492927058770002e-10)}


def _times_exp(value, log_scale):
    """``value * exp(log_scale)`` without forming ``exp(log_scale)``, which overflows first.

    With ``q = round(log_scale / ln 2)`` and ``r = log_scale - q ln 2`` (``|r| <= ln 2 / 2``),
    ``value * exp(log_scale) = ldexp(value * exp(r), q)``: finite whenever the product is
    representable (e.g. a difference of three sums of size e^712 that is itself 2.4e305).
    """
    hi, lo = _LN2_SPLIT[jnp.dtype(value.dtype).name]
    q = jnp.round(log_scale / math.log(2.0))
    r = (log_scale - q * hi) - q * lo
    return jnp.ldexp(value * jnp.exp(r), q.astype(jnp.int32))


def _combine(sums, coefficients):
    """``(total, top)`` with ``sum_t coeff_t * scaled_t * exp(shift_t) = total * exp(top)``, ``top`` the largest shift.

    ``total`` is the signed sum relative to ``exp(top)``; the caller applies the scale last
    (:func:`_times_exp`) or keeps it as a log (:func:`_finish`).
    """
    shifts = jnp.stack([s for _, s in sums])
    top = jnp.max(shifts)
    total = sum(c * scaled * jnp.exp(shift - top) for (scaled, shift), c in zip(sums, coefficients, strict=False))
    return total, top


def _finish(total, top, finite, log: bool):
    """MMD^2 or, with ``log``, ``(sign, log|MMD^2|)`` from ``MMD^2 = total * exp(top)`` (``top`` None: 0).

    ``finite``: whether every input entry is finite (None: the value shows it itself); where it is
    False the result is NaN, so that one host copy of it tells the caller whether to look at the
    inputs (:func:`_evaluate`).
    """
    if finite is not None:
        total = jnp.where(finite, total, jnp.nan)
    if log:
        log_abs = jnp.log(jnp.abs(total))
        return jnp.sign(total), (log_abs if top is None else log_abs + top)
    if top is None:
        return total
    return _times_exp(total, top)


def _coefficients(n: int, m: int, unbiased: bool):
    if unbiased:
        return (1.0 / (n * (n - 1)), 1.0 / (m * (m - 1)), -2.0 / (n * m))
    return (1.0 / n**2, 1.0 / m**2, -2.0 / (n * m))


@counted_jit(static_argnames=("unbiased", "log"))
def _mmd2_dense(x, y, kernel, unbiased, log=False):
    """MMD^2 (or ``(sign, log|MMD^2|)``) from three whole Gram matrices; NaN when an input entry is not finite."""
    centre = jnp.mean(y, axis=0)
    rx, ry = _rows(kernel, x), _rows(kernel, y)
    rx, ry = rx + _row_data(kernel, rx, centre), ry + _row_data(kernel, ry, centre)
    sums = [_dense_sum(kernel, rx, rx, centre, unbiased), _dense_sum(kernel, ry, ry, centre, unbiased),
            _dense_sum(kernel, rx, ry, centre, False)]
    return _finish(*_combine(sums, _coefficients(x.shape[0], y.shape[0], unbiased)), _inputs_finite(x, y), log)


def _tiling(n: int, block_size: int) -> tuple[int, int]:
    """(number of tiles, rows per tile): balanced tiles of at most ``block_size`` rows.

    ``n = 10_000`` with ``block_size = 512`` gives 20 tiles of 500 rows rather than 20 tiles
    of 512 with 240 padded rows. When the tiles do not divide ``n`` the last one is moved back
    to end at row ``n`` (it overlaps its neighbour by fewer than ``blocks`` rows, which it masks):
    nothing is padded or copied.
    """
    blocks = -(-n // block_size)
    return blocks, -(-n // blocks)


def _tile_pairs(blocks_a: int, blocks_b: int, symmetric: bool):
    """``(length, indices)``: how many tiles a sum visits and ``t -> (i, j, weight)`` for the ``t``-th.

    Not symmetric: all ``blocks_a * blocks_b`` pairs, row-major. Symmetric (a is b, ``B`` tiles):
    each unordered pair once, ``B (B + 1) / 2`` tiles, the off-diagonal ones with weight 2: row
    tile ``i`` meets ``j = (i + s) mod B`` for ``s = 0 .. (B - 1) // 2`` (``s = 0`` the diagonal
    tile), and for even ``B`` the pairs ``s = B / 2`` once, from ``i < B / 2``. The indices are
    computed in the loop, so nothing of size ``B^2`` is stored; consecutive tiles share their row tile.
    """
    if not symmetric:
        return blocks_a * blocks_b, lambda t: (t // blocks_b, t % blocks_b, 1.0)
    steps = (blocks_a - 1) // 2 + 1
    regular = blocks_a * steps

    def indices(t):
        extra = t >= regular
        i = jnp.where(extra, t - regular, t // steps)
        s = jnp.where(extra, blocks_a // 2, t % steps)
        return i, (i + s) % blocks_a, jnp.where(s == 0, 1.0, 2.0)

    return regular + (blocks_a // 2 if blocks_a % 2 == 0 else 0), indices


def _tile_data(kernel: Kernel, rows, centre, blocks: int, tile: int) -> tuple[jax.Array, ...]:
    """:func:`_row_data` of each of the ``blocks`` tiles of ``rows``, stacked ``(blocks, tile)``: O(n) memory.

    The tiles are those of :func:`_blocked_sum` (the last one moved back to end at row ``n``). One
    tile at a time, so the centred rows are never formed for the whole sample.
    """
    n = rows[0].shape[0]

    def one(start):
        return _row_data(kernel, tuple(jax.lax.dynamic_slice_in_dim(r, start, tile) for r in rows), centre)

    return jax.lax.map(one, jnp.minimum(jnp.arange(blocks) * tile, n - tile))


def _blocked_sum(kernel: Kernel, ra, rb, centre, block_size: int, symmetric: bool, exclude_diagonal: bool):
    """Tile-by-tile sum of k(a_i, b_j) as ``(scaled, log shift)``, with an online shift (flash-attention style).

    ``ra``, ``rb`` are the prepared rows (:func:`_rows`), each tile's row data (:func:`_row_data`) is
    prepared before the loop (:func:`_tile_data`); the tiles are visited as in
    :func:`_tile_pairs` (with ``symmetric``, a is b and each unordered pair of tiles is computed
    once). Only tiles that hold padding rows or diagonal entries compute a mask (``lax.switch``
    per tile). For the exponential kernels each tile is shifted by its Cauchy-Schwarz bound,
    or by its exact maximum when the bound is too loose (see the comment above ``_exponent_range``),
    and the running total is rescaled whenever the running shift grows. The running total
    is Kahan-compensated (float32 sums over ~10^6 tiles stay at rounding level).
    """
    n_a, n_b = ra[0].shape[0], rb[0].shape[0]
    blocks_a, tile_a = _tiling(n_a, block_size)
    blocks_b, tile_b = _tiling(n_b, block_size)
    length, indices = _tile_pairs(blocks_a, blocks_b, symmetric)
    local_a, local_b = jnp.arange(tile_a), jnp.arange(tile_b)
    dtype = ra[0].dtype
    exponential = kernel.exponential
    overlap = blocks_a * tile_a != n_a or blocks_b * tile_b != n_b
    # a diagonal tile needs the mask to drop its diagonal, or (Laplace) to make its distances exactly 0
    diagonal_mask = symmetric and (exclude_diagonal or kernel.kind == "laplace")
    loose = 0.5 * _exponent_range(dtype)
    data_a = _tile_data(kernel, ra, centre, blocks_a, tile_a)
    data_b = data_a if symmetric else _tile_data(kernel, rb, centre, blocks_b, tile_b)
    if exponential:  # the largest row norm of each tile: a tile's Cauchy-Schwarz bound is a product of two
        norm_a, norm_b = jnp.max(data_a[-1], axis=1), jnp.max(data_b[-1], axis=1)

    def tile(carry, _):
        t, total, comp, shift = carry
        i, j, weight = indices(t)
        # the last tile ends at row n (dynamic_slice clamps its start): rows below i * tile_a belong to tile i - 1
        start_a, start_b = jnp.minimum(i * tile_a, n_a - tile_a), jnp.minimum(j * tile_b, n_b - tile_b)
        a_tile = tuple(jax.lax.dynamic_slice_in_dim(r, start_a, tile_a) for r in ra) + tuple(v[i] for v in data_a)
        b_tile = tuple(jax.lax.dynamic_slice_in_dim(r, start_b, tile_b) for r in rb) + tuple(v[j] for v in data_b)
        # the Cauchy-Schwarz bound of the exponents: the largest row norms of the two tiles
        bound = norm_a[i] * norm_b[j] if exponential else None

        def branch(masked: bool, exact: bool):
            def run():
                keep = same = None
                if masked:
                    row_ids = start_a + local_a
                    col_ids = start_b + local_b
                    keep = (row_ids[:, None] >= i * tile_a) & (col_ids[None, :] >= j * tile_b)
                    if symmetric:
                        same = row_ids[:, None] == col_ids[None, :]
                        if exclude_diagonal:
                            keep &= ~same
                values, exponent = _tile(kernel, a_tile, b_tile, centre, same)
                if exponent is None:
                    return _masked_sum(values, None, keep, None), jnp.zeros((), dtype)
                if keep is not None:
                    exponent = jnp.where(keep, exponent, -jnp.inf)
                if not exact:
                    return _masked_sum(values, exponent, keep, bound), bound
                top = jnp.max(exponent)  # -inf when every entry is masked: the tile adds nothing
                return _masked_sum(values, exponent, keep, _finite_or_zero(top)), top
            return run

        needs_mask = False
        if overlap:
            needs_mask = ((i == blocks_a - 1) & (blocks_a * tile_a != n_a)) | ((j == blocks_b - 1) & (blocks_b * tile_b != n_b))
        if diagonal_mask:
            needs_mask = needs_mask | (i == j)
        branches = [branch(False, False)] + ([branch(True, False)] if overlap or diagonal_mask else [])
        if exponential:  # the same again with the exact maximum as the shift
            branches += [branch(False, True)] + ([branch(True, True)] if overlap or diagonal_mask else [])
        if len(branches) == 1:
            contribution, tile_shift = branches[0]()
        else:
            index = jnp.asarray(needs_mask, jnp.int32)
            if exponential:
                index = index + (len(branches) // 2) * (bound > loose).astype(jnp.int32)
            contribution, tile_shift = jax.lax.switch(index, branches)
        if exponential:
            new_shift = jnp.maximum(shift, tile_shift)
            safe_shift = _finite_or_zero(new_shift)
            rescale = jnp.where(jnp.isfinite(shift), jnp.exp(shift - safe_shift), 0.0)
            contribution = contribution * jnp.where(jnp.isfinite(tile_shift), jnp.exp(tile_shift - safe_shift), 0.0)
            total, comp = total * rescale, comp * rescale
        else:
            new_shift = shift
        # Kahan summation of weight * contribution into total.
        term = weight * contribution - comp
        new_total = total + term
        comp = (new_total - total) - term
        return (t + 1, new_total, comp, new_shift), None

    init_shift = jnp.asarray(-jnp.inf if exponential else 0.0, dtype)
    zero = jnp.zeros((), dtype)
    (_, total, _, shift), _ = jax.lax.scan(tile, (jnp.zeros((), jnp.int32), zero, zero, init_shift), None,
                                           length=length)
    return total, _finite_or_zero(shift)


@counted_jit(static_argnames=("unbiased", "block_size", "log"))
def _mmd2_blocked(x, y, kernel, unbiased, block_size, log=False):
    """MMD^2 (or ``(sign, log|MMD^2|)``) tile by tile; NaN when an input entry is not finite."""
    if kernel.kind == "linear":  # sum_ij x_i . y_j = (sum_i x_i) . (sum_j y_j): no tiles at all
        return _finish(_feature_mmd2(x, y, unbiased), None, None, log)
    centre = jnp.mean(y, axis=0)
    rx, ry = _rows(kernel, x), _rows(kernel, y)
    sums = [
        _blocked_sum(kernel, rx, rx, centre, block_size, True, unbiased),
        _blocked_sum(kernel, ry, ry, centre, block_size, True, unbiased),
        _blocked_sum(kernel, rx, ry, centre, block_size, False, False),
    ]
    return _finish(*_combine(sums, _coefficients(x.shape[0], y.shape[0], unbiased)), _inputs_finite(x, y), log)


def _column_sums(a: jax.Array) -> jax.Array:
    """``sum_i a_i`` as a ``(1, n) x (n, d)`` product: a BLAS call, 2x faster than XLA:CPU's column reduction at n = 10^3."""
    return (jnp.ones((1, a.shape[0]), a.dtype) @ a)[0]


def _feature_mmd2(fx, fy, unbiased):
    """MMD^2 of the kernel ``<f(x), f(y)>`` in closed form, O((n + m) D): ``sum_ij f_i . g_j = (sum_i f_i) . (sum_j g_j)``.

    Biased: ``|sx / n - sy / m|^2`` with ``sx = sum_i f(x_i)``, ``sy = sum_j f(y_j)``. Unbiased: the
    diagonals ``sum_i |f(x_i)|^2`` removed from the within-sample sums exactly,
    ``(|sx|^2 - sum_i |f(x_i)|^2) / (n (n - 1)) + (|sy|^2 - sum_j |f(y_j)|^2) / (m (m - 1)) - 2 sx . sy / (n m)``.
    The linear kernel's MMD^2 is this with ``f`` the identity. The value is a polynomial in the
    entries (sums, differences and products, no division by one): an infinite or NaN entry makes
    it infinite or NaN, which is all :func:`mmd2`'s check of its inputs needs, at no extra pass.
    """
    n, m = fx.shape[0], fy.shape[0]
    sum_x, sum_y = _column_sums(fx), _column_sums(fy)
    if not unbiased:
        diff = sum_x / n - sum_y / m
        return jnp.sum(diff * diff)
    within_x = (jnp.sum(sum_x * sum_x) - jnp.sum(fx * fx)) / (n * (n - 1))
    within_y = (jnp.sum(sum_y * sum_y) - jnp.sum(fy * fy)) / (m * (m - 1))
    return within_x + within_y - 2.0 * jnp.dot(sum_x, sum_y) / (n * m)


#: Largest sample (rows) for which the default :func:`mmd2` call sums whole Gram matrices at once.
DENSE_MAX_ROWS = 256
#: The tile rows of the default call above :data:`DENSE_MAX_ROWS` (see :data:`LARGE_BLOCK_SIZE`).
DEFAULT_BLOCK_SIZE = 512
#: The tile rows of the default call for the kernels of one product per tile (all but the product kernel) when
#: the larger sample has more than :data:`LARGE_TILES_ABOVE` rows.
LARGE_BLOCK_SIZE = 1024
LARGE_TILES_ABOVE = 4096


def default_block_size(n: int, m: int, kernel: Kernel | None = None) -> int | None:
    """The ``block_size`` that :func:`mmd2` uses when none is given: ``None`` (dense) or a tile size.

    Dense (three whole Gram matrices, one fused XLA reduction each) when both samples have at
    most :data:`DENSE_MAX_ROWS` = 256 rows. Above, balanced tiles (n = 10^4 is 20 tiles of 500
    or 10 of 1000, no overlap to mask) of at most :data:`DEFAULT_BLOCK_SIZE` = 512 rows, or
    :data:`LARGE_BLOCK_SIZE` = 1024 rows when the larger sample has more than
    :data:`LARGE_TILES_ABOVE` = 4096 rows and the kernel is not the product kernel (``kernel=None``
    counts as such). Measured on the project's 2-core x86 CPU at d = 64 (docs/performance.md),
    interleaved minima on the quiet machine:

    * up to 256 rows dense and tiled take the same time; above, tiling is faster and keeps
      memory O((n + m) d). Each tile is one fused XLA computation (the matmul, the exp and the sum);
    * at n = m = 10^4, 1000-row tiles against 500-row ones: RBF float64 2-6 % faster (biased and
      unbiased), float32 7 %, Laplace float64 6 %, exp float64 7 %; the product kernel, whose tile
      computes two products (``x . x'`` and the keys'), 3-5 % slower in float64 and 9 % in float32;
    * at n = m = 1000-4000 the 1000-row tiles are never faster: a diagonal tile of a within-sample
      sum masks its diagonal (the unbiased estimator; the Laplace kernel's exact zero distances),
      which costs about twice an unmasked tile, and with few tiles most are diagonal. At 1000 rows
      (one tile) Laplace float64 took 0.021 s against 0.012 s in two 500-row tiles;
    * 500-row tiles took 1/1.45-1/1.6 of the time of 371-row ones (27 tiles, the last overlapping).

    Memory above the crossover: the inputs, the per-tile row data (O(n + m)) and one tile's
    temporaries at most, whatever n (XLA fuses an unmasked tile's product, exp and sum).

    Raises:
      ValueError: ``n`` or ``m`` not a positive integer, or ``kernel`` neither None nor a Kernel.
    """
    n = V.positive_int(n, "n")
    m = V.positive_int(m, "m")
    if kernel is not None and not isinstance(kernel, Kernel):
        raise ValueError(f"kernel must be None or an iclkd_jax Kernel (e.g. rbf_kernel(bandwidth=1.0)), "
                         f"got {type(kernel).__name__}")
    if max(n, m) <= DENSE_MAX_ROWS:
        return None
    if max(n, m) > LARGE_TILES_ABOVE and (kernel is None or kernel.kind != "product"):
        return LARGE_BLOCK_SIZE
    return DEFAULT_BLOCK_SIZE


def _evaluate(x, y, kernel: Kernel, estimator: str, block_size: int | None, log: bool):
    """``(x, y, result)``: the validated samples and the jitted program's MMD^2 (or ``(sign, log|MMD^2|)``).

    The inputs' finiteness is checked inside the program, in one fused pass, instead of by a host
    pass over their values: the result is NaN (or infinite, for the linear kernel) when an entry
    is not finite, and only then does the caller look at the inputs on the host
    (:func:`_check_inputs`), to name the argument that holds it.
    """
    x, y = _validate_samples(x, y, kernel, estimator, check_finite=False)
    unbiased = estimator == "unbiased"
    if block_size is None:
        block_size = default_block_size(x.shape[0], y.shape[0], kernel)
    if block_size is None:
        return x, y, _mmd2_dense(x, y, kernel, unbiased, log)
    return x, y, _mmd2_blocked(x, y, kernel, unbiased, V.positive_int(block_size, "block_size"), log)


def _check_inputs(x, y) -> None:
    """Raises the ``ValueError`` naming ``x`` or ``y`` when one holds a NaN or an infinity (a host pass over both)."""
    V.check_finite(x, "x")
    V.check_finite(y, "y")


def mmd2(x: ArrayLike, y: ArrayLike, kernel: Kernel, *, estimator: str = "biased",
         block_size: int | None = None) -> jax.Array:
    """Squared MMD between the samples ``x (n, d)`` and ``y (m, d)`` under ``kernel``.

    Without ``block_size`` the path is chosen by size and kernel (:func:`default_block_size`): dense
    for samples of at most 256 rows, blocked with tiles of at most 512 rows above (1024 above 4096
    rows, except for the product kernel), so the default call
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
      A scalar of the inputs' dtype, finite whenever the true MMD^2 is representable in it: for
      the exponential kernels the sums are scaled by ``exp(-shift)`` and the shift is applied
      last as a power of 2 (``ldexp``), so a difference of sums of size ``e^712`` that is itself
      ``2.4e305`` comes out finite in float64. Beyond the dtype's range, :func:`log_mmd2` gives
      its logarithm.

    Raises:
      ValueError: for invalid arguments (naming the argument and its shape; non-finite entries
        are detected inside the computation, outside ``jit``), and, when called outside
        ``jit``/``vmap``, when the true MMD^2 exceeds the largest number of the dtype (it is not
        representable: compute in float64, or use :func:`log_mmd2`); under a transformation such
        a value comes back as ``inf``.
    """
    x, y, value = _evaluate(x, y, kernel, estimator, block_size, log=False)
    if not V.is_tracer(value) and not math.isfinite(float(value)):  # a host copy of one scalar, no extra dispatch
        _check_inputs(x, y)
        raise ValueError(f"mmd2 overflows {x.dtype}: with x of shape {tuple(x.shape)} and y of shape "
                         f"{tuple(y.shape)} under {kernel!r}, the MMD^2 exceeds {jnp.finfo(x.dtype).max:.3g}, the "
                         f"largest {x.dtype} (logits up to ~{math.log(float(jnp.finfo(x.dtype).max)):.0f}); "
                         "compute it in float64, or its logarithm with log_mmd2")
    return value


class LogMMD2(NamedTuple):
    """``MMD^2 = sign * exp(log_abs)`` (:func:`log_mmd2`).

    Attributes:
      sign: ``+1``, ``-1`` (the unbiased estimator can be negative) or ``0`` (then ``log_abs = -inf``).
      log_abs: ``log |MMD^2|``, finite far beyond the dtype's range.
    """

    sign: jax.Array
    log_abs: jax.Array


def log_mmd2(x: ArrayLike, y: ArrayLike, kernel: Kernel, *, estimator: str = "biased",
             block_size: int | None = None) -> LogMMD2:
    """``(sign, log|MMD^2|)`` of :func:`mmd2`, available where MMD^2 itself exceeds the dtype's range.

    With the kernel sums ``S_xx = sum_ij k(x_i, x_j)``, ``S_yy``, ``S_xy`` and the estimator's
    coefficients ``(c_xx, c_yy, c_xy)`` (biased ``(1/n^2, 1/m^2, -2/(n m))``, unbiased
    ``(1/(n (n - 1)), 1/(m (m - 1)), -2/(n m))`` with the diagonals of ``S_xx``, ``S_yy`` left out),
    ``MMD^2 = c_xx S_xx + c_yy S_yy + c_xy S_xy``. Each sum is accumulated scaled,
    ``S_t = s_t exp(tau_t)``, every term ``exp(e_ij - tau)`` at most 1 (for the exponential
    kernels ``tau`` is a tile's Cauchy-Schwarz bound ``max|u_i| max|v_j| >= e_ij``, or its largest
    exponent, rescaled online to the largest seen; 0 for the bounded kernels), so no partial sum
    overflows. With ``tau = max_t tau_t``,

        MMD^2 = T exp(tau),   T = sum_t c_t s_t exp(tau_t - tau),

    and the result is ``sign = sign(T)``, ``log_abs = log|T| + tau``: finite for any finite
    inputs, e.g. the exp kernel at logits of 10^3 in float64 (``MMD^2 ~ e^1000``) or 100 in
    float32. ``T`` carries the same rounding as :func:`mmd2` (a signed sum of ``(n + m)^2`` terms
    each at most 1: absolute error ``~ (n + m)^2 eps sum|terms| exp(-tau)``), so ``log_abs`` has
    absolute error ``~ (n + m)^2 eps sum|terms| / |MMD^2|`` while that is small; ``tau`` adds
    ``eps |tau|`` from the entries' own rounding.

    Args:
      x, y: samples ``(n, d)`` and ``(m, d)``, same width and floating dtype.
      kernel: a :class:`~iclkd_jax.kernels.Kernel` (any kind; for the bounded ones ``tau = 0``).
      estimator: ``"biased"`` or ``"unbiased"`` (needs n, m >= 2).
      block_size: as in :func:`mmd2` (the same default: dense up to 256 rows, tiles above).

    Returns:
      :class:`LogMMD2` ``(sign, log_abs)``, scalars of the inputs' dtype.

    Raises:
      ValueError: for invalid arguments, naming the argument and its shape.
    """
    x, y, (sign, log_abs) = _evaluate(x, y, kernel, estimator, block_size, log=True)
    if not V.is_tracer(log_abs) and math.isnan(float(log_abs)):
        _check_inputs(x, y)
        raise ValueError(f"log_mmd2 is NaN for finite x of shape {tuple(x.shape)} and y of shape {tuple(y.shape)} "
                         f"under {kernel!r}")
    return LogMMD2(sign, log_abs)


def mmd(x: ArrayLike, y: ArrayLike, kernel: Kernel, *, block_size: int | None = None) -> jax.Array:
    """``sqrt(MMD_b^2)`` with the biased estimator (round-off negatives clipped to 0)."""
    return jnp.sqrt(jnp.maximum(mmd2(x, y, kernel, estimator="biased", block_size=block_size), 0.0))


@counted_jit(static_argnames=("unbiased",))
def _mmd2_features(fx, fy, unbiased):
    return _feature_mmd2(fx, fy, unbiased)


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
