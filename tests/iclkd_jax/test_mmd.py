"""MMD^2: dense vs NumPy, blocked vs dense, features vs linear kernel, bad inputs, jit/vmap, memory bound."""

import importlib

import jax
import jax.numpy as jnp
import np_reference as ref
import numpy as np
import pytest

import iclkd_jax as ik

EPS64 = float(np.finfo(np.float64).eps)
WK = jax.random.normal(jax.random.key(11), (2, 3)) * 0.5
KERNELS = {
    "rbf": (lambda: ik.rbf_kernel(bandwidth=1.3), {"bandwidth": 1.3}),
    "laplace": (lambda: ik.laplace_kernel(bandwidth=0.9), {"bandwidth": 0.9}),
    "linear": (lambda: ik.linear_kernel(), {}),
    "exp": (lambda: ik.exp_kernel(), {}),
    "product": (lambda: ik.product_kernel(WK), {"wk": WK}),
}


def samples(key, n=10, m=13, *, scale=0.6, dtype=jnp.float64):
    kx, ky = jax.random.split(key)
    return scale * jax.random.normal(kx, (n, 3), dtype), scale * (0.3 + jax.random.normal(ky, (m, 3), dtype))


def reference(kind, x, y, estimator):
    params = KERNELS[kind][1]
    return ref.mmd2(ref.gram(kind, x, x, **params), ref.gram(kind, y, y, **params), ref.gram(kind, x, y, **params), estimator)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("kind", KERNELS)
def test_dense_and_blocked_match_numpy(key, kind, estimator):
    x, y = samples(key)
    want, scale = reference(kind, x, y, estimator)
    kernel = KERNELS[kind][0]()
    dense = float(ik.mmd2(x, y, kernel, estimator=estimator))
    # a signed sum of (n+m)^2 terms: error <= (n + m)^2 eps * sum|terms| (+ exp's eps |logit|)
    tol = (23**2 + 8) * EPS64 * scale
    assert abs(dense - want) <= tol
    for block in (1, 4, 7, 16):                        # none divides both n = 10 and m = 13
        blocked = float(ik.mmd2(x, y, kernel, estimator=estimator, block_size=block))
        assert abs(blocked - dense) <= 2 * tol, (block, blocked, dense)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_blocked_exp_kernel_large_logits(key, estimator):
    """exp kernel with logits ~ 3e2 (float64): every sum is max-shifted; blocked equals dense."""
    x, y = samples(key, scale=7.0)
    kernel = ik.exp_kernel()
    dense = float(ik.mmd2(x, y, kernel, estimator=estimator))
    want, scale = reference("exp", x, y, estimator)
    assert np.isfinite(dense) and scale > 1e100
    assert abs(dense - want) <= (23**2 + 8 * 400) * EPS64 * scale
    for block in (3, 8):
        blocked = float(ik.mmd2(x, y, kernel, estimator=estimator, block_size=block))
        assert abs(blocked - dense) <= (23**2 + 8 * 400) * EPS64 * scale


def test_float32_dtype_and_tolerance(key):
    x, y = samples(key, dtype=jnp.float32)
    for kind in KERNELS:
        kernel = KERNELS[kind][0]()
        want, scale = reference(kind, x, y, "biased")
        for block in (None, 4):
            got = ik.mmd2(x, y, kernel, block_size=block)
            assert got.dtype == jnp.float32
            # float32 Gram entries (relative error ~ (d + 4) eps32 |logit|) summed over (n+m)^2 terms
            assert abs(float(got) - want) <= (23**2 + 64) * float(np.finfo(np.float32).eps) * scale, kind
    assert ik.mmd(x, y, ik.rbf_kernel(bandwidth=1.0)).dtype == jnp.float32
    fx, fy = (ik.taylor_features(2, key_dim=3)(a) for a in (x, y))
    assert ik.mmd2_from_features(fx, fy).dtype == jnp.float32


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_from_features_equals_linear_kernel_on_features(key, estimator):
    x, y = samples(key)
    fm = ik.taylor_features(2, key_dim=3)
    fx, fy = fm(x), fm(y)
    got = float(ik.mmd2_from_features(fx, fy, estimator=estimator))
    want = float(ik.mmd2(fx, fy, ik.linear_kernel(), estimator=estimator))
    _, scale = ref.mmd2(*(ref.f64(a) @ ref.f64(b).T for a, b in ((fx, fx), (fy, fy), (fx, fy))), estimator)
    assert abs(got - want) <= 4 * 23**2 * EPS64 * scale


def test_unbiased_can_be_negative_and_is_returned_as_is(key):
    """Two samples of one law: the U-statistic is negative about half of the time; no clipping."""
    kernel = KERNELS["rbf"][0]()
    values = []
    for i in range(8):
        kx, ky = jax.random.split(jax.random.fold_in(key, i))
        x, y = jax.random.normal(kx, (6, 3)), jax.random.normal(ky, (6, 3))
        got = float(ik.mmd2(x, y, kernel, estimator="unbiased"))
        want, scale = reference("rbf", x, y, "unbiased")
        assert abs(got - want) <= 200 * EPS64 * scale
        assert float(ik.mmd2(x, y, kernel)) >= 0.0                   # the V-statistic is a squared norm
        values.append(got)
    assert min(values) < 0 < max(values)


def _intermediate_sizes(jaxpr):
    """Element counts of every intermediate of ``jaxpr``, loop bodies included."""
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            yield int(np.prod(v.aval.shape)) if hasattr(v.aval, "shape") else 0
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (list, tuple)) else [p]):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    yield from _intermediate_sizes(getattr(inner, "jaxpr", inner))


def test_blocked_memory_is_bounded_by_block_size(key):
    """No intermediate of the blocked computation is as large as an n x m Gram matrix."""
    from iclkd_jax.mmd import _mmd2_blocked
    n = m = 64
    x, y = samples(key, n, m)
    block = 8
    jaxpr = jax.make_jaxpr(lambda a, b: _mmd2_blocked(a, b, ik.rbf_kernel(bandwidth=1.0), True, block))(x, y)

    biggest = max(_intermediate_sizes(jaxpr.jaxpr))
    assert biggest <= max(block * block * 3, 2 * (n + m) * 3, (n // block) ** 2), biggest
    assert biggest < n * m // 4
    dense = jax.make_jaxpr(lambda a, b: ik.mmd2(a, b, ik.rbf_kernel(bandwidth=1.0)))(x, y)
    assert max(_intermediate_sizes(dense.jaxpr)) >= n * m                            # the check can see a Gram matrix


BAD = [
    (lambda x, y, k: ik.mmd2(x[:1], y, k, estimator="unbiased"), "x", "(1, 3)"),
    (lambda x, y, k: ik.mmd2(x, y[:1], k, estimator="unbiased"), "y", "(1, 3)"),
    (lambda x, y, k: ik.mmd2(x[:0], y, k), "x", "(0, 3)"),
    (lambda x, y, k: ik.mmd2(x, y[:, :2], k), "y", "(13, 2)"),
    (lambda x, y, k: ik.mmd2(x, y.astype(jnp.float32), k), "y", "float32"),
    (lambda x, y, k: ik.mmd2(x.at[0, 0].set(jnp.nan), y, k), "x", "non-finite"),
    (lambda x, y, k: ik.mmd2(x, y, k, estimator="bogus"), "estimator", "bogus"),
    (lambda x, y, k: ik.mmd2(x, y, k, block_size=0), "block_size", "0"),
    (lambda x, y, k: ik.mmd2(x, y, "rbf"), "kernel", "str"),
    (lambda x, y, k: ik.mmd2(x[:, :2], y[:, :2], ik.product_kernel(WK)), "x", "(10, 2)"),
    (lambda x, y, k: ik.mmd2_from_features(x, y[:1], estimator="unbiased"), "features_y", "(1, 3)"),
    (lambda x, y, k: ik.mmd2_from_features(x, y[:, :1]), "features_y", "(13, 1)"),
]


@pytest.mark.parametrize("call,name,detail", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_inputs_name_argument_and_shape(key, call, name, detail):
    x, y = samples(key)
    with pytest.raises(ValueError) as err:
        call(x, y, ik.rbf_kernel(bandwidth=1.0))
    assert name in str(err.value) and detail in str(err.value), str(err.value)


def test_jit_vmap_and_no_retrace_across_bandwidths(key):
    x, y = samples(key, 9, 11)                      # shapes used by no other test
    eager = ik.mmd2(x, y, ik.rbf_kernel(bandwidth=1.0), estimator="unbiased")
    np.testing.assert_allclose(jax.jit(lambda a, b: ik.mmd2(a, b, ik.rbf_kernel(bandwidth=1.0), estimator="unbiased"))(x, y),
                               eager, rtol=1e-13)
    ys = jnp.stack([y, y + 1.0])
    batched = jax.vmap(lambda b: ik.mmd2(x, b, ik.rbf_kernel(bandwidth=1.0), block_size=4))(ys)
    np.testing.assert_allclose(batched[1], ik.mmd2(x, y + 1.0, ik.rbf_kernel(bandwidth=1.0), block_size=4), rtol=1e-12)
    name = "iclkd_jax.mmd._mmd2_dense"
    before = ik.trace_counts()[name]
    for bw in (0.5, 2.0, 3.0):                      # the bandwidth is a pytree leaf, not a static argument
        ik.mmd2(x, y, ik.rbf_kernel(bandwidth=bw), estimator="unbiased")
    assert ik.trace_counts()[name] == before


def _primitives(jaxpr):
    """Names of the floating-point primitives (integer index arithmetic of the tile loop excluded)."""
    for eqn in jaxpr.eqns:
        if any(jnp.issubdtype(getattr(v.aval, "dtype", jnp.int32), jnp.floating) for v in eqn.outvars):
            yield eqn.primitive.name
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (list, tuple)) else [p]):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    yield from _primitives(getattr(inner, "jaxpr", inner))


def test_default_path_is_chosen_by_size_and_kernel():
    """Dense up to DENSE_MAX_ROWS rows per sample; above, DEFAULT_BLOCK_SIZE tiles, LARGE_BLOCK_SIZE above
    LARGE_TILES_ABOVE rows except for the product kernel (the measured choices, docs/performance.md)."""
    mmd_module = importlib.import_module("iclkd_jax.mmd")  # ik.mmd is the function
    assert mmd_module.DENSE_MAX_ROWS == 256 and mmd_module.DEFAULT_BLOCK_SIZE == 512
    assert mmd_module.LARGE_BLOCK_SIZE == 1024 and mmd_module.LARGE_TILES_ABOVE == 4096
    product = ik.product_kernel(jnp.ones((2, 3)))
    for kernel in (None, ik.rbf_kernel(bandwidth=1.0), ik.exp_kernel(), product):
        assert ik.default_block_size(1, 1, kernel) is None
        assert ik.default_block_size(256, 256, kernel) is None
        assert ik.default_block_size(257, 3, kernel) == 512
        assert ik.default_block_size(4096, 4096, kernel) == 512
        assert ik.default_block_size(3, 4097, kernel) == (512 if kernel is product else 1024)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="n"):
            ik.default_block_size(bad, 4)
    with pytest.raises(ValueError, match="kernel must be None or an iclkd_jax Kernel"):
        ik.default_block_size(300, 300, "rbf")


def test_default_call_dispatches_and_matches_the_explicit_path(key):
    """The default call runs the dense program for small samples, the blocked one above; same value as explicit."""
    kernel = KERNELS["rbf"][0]()
    small = samples(key, 7, 8)
    big = samples(key, 258, 5)
    dense, blocked = "iclkd_jax.mmd._mmd2_dense", "iclkd_jax.mmd._mmd2_blocked"
    counts = ik.trace_counts()
    ik.mmd2(*small, kernel)
    after_small = ik.trace_counts()
    assert after_small.get(dense, 0) == counts.get(dense, 0) + 1 and after_small.get(blocked, 0) == counts.get(blocked, 0)
    default = ik.mmd2(*big, kernel)
    after_big = ik.trace_counts()
    assert after_big.get(blocked, 0) == after_small.get(blocked, 0) + 1 and after_big[dense] == after_small[dense]
    assert float(default) == float(ik.mmd2(*big, kernel, block_size=ik.default_block_size(258, 258, kernel)))  # same program
    assert ik.trace_counts()[blocked] == after_big[blocked]
    want, scale = reference("rbf", *big, "biased")
    assert abs(float(default) - want) <= (263**2 + 8) * EPS64 * scale


def test_default_call_memory_is_bounded_above_the_crossover(key):
    """Above a tile's rows the default call holds no n x m Gram matrix, only tiles (memory O((n + m) d))."""
    n = m = 1400  # 3 tiles of 467 rows (traced only)
    x, y = samples(key, n, m)
    for kernel in (ik.rbf_kernel(bandwidth=1.0), ik.product_kernel(WK)):
        jaxpr = jax.make_jaxpr(lambda a, b, kernel=kernel: ik.mmd2(a, b, kernel))(x, y)
        tile = ik.default_block_size(n, m, kernel)
        assert max(_intermediate_sizes(jaxpr.jaxpr)) <= tile * tile < n * m


@pytest.mark.parametrize("block", [None, 4])
def test_product_kernel_sums_factor_times_shifted_exp(key, block):
    """No log|x.x'| and no sign array: the product kernel is summed as (x.x') exp(logit - shift), one exp per entry."""
    x, y = samples(key)
    kernel = ik.product_kernel(WK)
    jaxpr = jax.make_jaxpr(lambda a, b: ik.mmd2(a, b, kernel, block_size=block))(x, y)
    names = list(_primitives(jaxpr.jaxpr))
    assert "log" not in names and "sign" not in names and "exp" in names


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_product_kernel_large_logits_float64(key, estimator):
    """Product kernel with logits ~ 3e2 (float64): only the exponent is max-shifted; dense, blocked, NumPy agree."""
    x, y = samples(key, scale=7.0)
    wk = jnp.eye(3)[:2] * 1.2                                       # logits |W^K x|^2 up to a few hundred
    kernel = ik.product_kernel(wk)
    want, scale = ref.mmd2(*(ref.gram("product", a, b, wk=wk) for a, b in ((x, x), (y, y), (x, y))), estimator)
    assert np.isfinite(want) and scale > 1e100
    tol = (23**2 + 8 * 400) * EPS64 * scale
    for block in (None, 3, 8):
        got = float(ik.mmd2(x, y, kernel, estimator=estimator, block_size=block))
        assert abs(got - want) <= tol, (block, got, want)


def _log_reference(kind, x, y, estimator, **params):
    """The float64 log-space reference (``verification.oracles.reference.log_mmd2``): ``(value, log of sum|terms|)``."""
    from verification.oracles import reference as vref
    total = vref.log_mmd2(np.asarray(x, np.float64), np.asarray(y, np.float64), kind, estimator=estimator, **params)
    assert total.log_abs < np.log(np.finfo(np.float64).max)
    return float(total.sign) * float(np.exp(total.log_abs)), float(total.log_terms)


@pytest.mark.parametrize("block", [None, 4, 300])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_representable_mmd2_beyond_exp_range_is_finite(key, block, estimator):
    """exp kernel, largest logit 712 (e^712 overflows float64): the MMD^2 ~ 1e307 is representable and comes out finite.

    The sums are ~e^712 / n^2 each; only their scale is applied last, as a power of 2. Error: the
    logits carry ~(d + 2) eps |logit| relative error into exp, the scale split ~eps |logit|, and the
    signed sum of (n + m)^2 terms (n + m)^2 eps: all relative to sum|terms| (log_terms of the reference).
    """
    x, y = samples(key, 10, 13, scale=0.3)
    x = x.at[:2].set(jnp.array([712.0, 0.0, 0.0]) / jnp.sqrt(712.0))          # x_0 . x_1 = 712 (off the diagonal)
    want, log_terms = _log_reference("exp", x, y, estimator)
    got = float(ik.mmd2(x, y, ik.exp_kernel(), estimator=estimator, block_size=block))
    assert np.isfinite(got) and want > 1e300 and log_terms < np.log(np.finfo(np.float64).max)
    assert abs(got - want) <= ((23**2 + 8) + 8 * 712) * EPS64 * np.exp(log_terms), (got, want)


def test_product_kernel_near_float64_max_is_finite(key):
    """The product kernel at logits up to ~712: the default (tiled) call and the dense one are finite and agree with log space."""
    n, m = 300, 270
    x, y = samples(key, n, m, scale=0.3)
    wk = jnp.eye(3)[:2]
    x = x.at[5].set(jnp.array([jnp.sqrt(712.0), 0.0, 0.0]))                     # |W^K x_5|^2 = 712
    want, log_terms = _log_reference("product", x, y, "biased", wk=np.asarray(wk))
    for block in (None, 64):
        got = float(ik.mmd2(x, y, ik.product_kernel(wk), block_size=block))
        assert np.isfinite(got)
        # relative to sum|terms| = e^log_terms: (n + m)^2 eps for the sums, 8 * 712 eps for the exponent and scale
        assert abs(got - want) <= ((n + m) ** 2 + 8 * 712) * EPS64 * np.exp(log_terms), (block, got, want)


def test_unrepresentable_mmd2_raises_outside_jit(key):
    """float32, logit 100: the true MMD^2 ~ e^100 / n^2 exceeds float32's max; eager calls raise, jitted ones return inf."""
    x, y = samples(key, 10, 13, scale=0.3, dtype=jnp.float32)
    x = x.at[0].set(jnp.array([10.0, 0.0, 0.0], jnp.float32))
    with pytest.raises(ValueError, match="overflows float32"):
        ik.mmd2(x, y, ik.exp_kernel())
    assert jnp.isinf(jax.jit(lambda a, b: ik.mmd2(a, b, ik.exp_kernel()))(x, y))
    assert np.isfinite(float(ik.mmd2(x.astype(jnp.float64), y.astype(jnp.float64), ik.exp_kernel())))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("kind", KERNELS)
def test_default_tiled_call_matches_float64_reference(key, kind, estimator, dtype):
    """Every kernel, estimator and dtype above the dense crossover (the default call is tiled) against NumPy float64.

    A signed sum of (n + m)^2 terms: error <= (n + m)^2 eps sum|terms| in the worst case, plus the
    entries' own rounding ((d + 4) eps |logit| relative, logits <= ~3 here): the float32 bound is the
    same formula with float32's eps (the reference is computed from the same float32 inputs).
    """
    n, m = 300, 270
    x, y = samples(key, n, m, dtype=dtype)
    want, scale = reference(kind, x, y, estimator)
    got = ik.mmd2(x, y, KERNELS[kind][0](), estimator=estimator)
    assert got.dtype == dtype
    eps = float(np.finfo(dtype).eps)
    assert abs(float(got) - want) <= ((n + m) ** 2 + 64) * eps * scale, (float(got), want)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_float32_exponent_shift_past_the_bound_path(key, estimator):
    """float32 product kernel with logits up to ~60: tiles whose Cauchy-Schwarz bound passes 35.7 take the exact maximum.

    Tiles of 8 rows: the outlier's tiles take the exact path, the others the bound; both agree with float64.
    """
    x, y = samples(key, 40, 37, scale=0.5, dtype=jnp.float32)
    wk = jnp.eye(3, dtype=jnp.float32)[:2]
    x = x.at[3].set(jnp.array([7.7, 0.0, 0.0], jnp.float32))                   # |W^K x_3|^2 ~ 59
    want, scale = ref.mmd2(*(ref.gram("product", a, b, wk=wk) for a, b in ((x, x), (y, y), (x, y))), estimator)
    for block in (8, 16):
        got = float(ik.mmd2(x, y, ik.product_kernel(wk), estimator=estimator, block_size=block))
        assert abs(got - want) <= (77**2 + 8 * 60) * float(np.finfo(np.float32).eps) * scale, (block, got, want)


@pytest.mark.parametrize("blocks", range(1, 8))
def test_symmetric_tiles_visit_each_unordered_pair_once(blocks):
    """B (B + 1) / 2 tiles; pair {i, j} once, weight 1 on the diagonal and 2 off it: the weighted visits cover B^2."""
    from iclkd_jax.mmd import _tile_pairs
    length, indices = _tile_pairs(blocks, blocks, True)
    assert length == blocks * (blocks + 1) // 2
    seen = {}
    for t in range(length):
        i, j, weight = (float(v) for v in indices(jnp.asarray(t)))
        pair = (min(int(i), int(j)), max(int(i), int(j)))
        assert pair not in seen
        seen[pair] = weight
    assert all(w == (1.0 if a == b else 2.0) for (a, b), w in seen.items())
    assert sum(seen.values()) == blocks**2
