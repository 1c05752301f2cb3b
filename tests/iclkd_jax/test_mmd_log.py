"""log_mmd2 against independent references (NumPy float64 in log space, mpmath), beyond the dtype's range; mmd2 finite near it.

Every bound here comes from one error analysis. MMD^2 is a signed sum of (n + m)^2 kernel terms; computed
in a dtype with unit round-off eps, the sum's absolute error is at most (n + m)^2 eps sum|terms| (any
summation order), and each term carries its entry's own rounding: (d + 2) eps |logit| relative through
exp for the exponential kernels, a few eps |s|^2 for the distance kernels (64 eps covers both at the
logits and spreads used below, except where a test states its largest logit L: then 8 (d + 2) L eps).
For the logarithm: the computed value is want (1 + u) with |u| <= delta = bound / |want|, so
|log got - log want| <= -log(1 - delta); the tests assert delta < 1/2, so the check is meaningful.
"""

import importlib
import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

import iclkd_jax as ik
from verification.oracles import reference

mmd_module = importlib.import_module("iclkd_jax.mmd")  # ik.mmd is the function
log_mmd2 = mmd_module.log_mmd2

WK = np.asarray(jax.random.normal(jax.random.key(11), (2, 3))) * 0.5
KERNELS = {
    "rbf": (lambda: ik.rbf_kernel(bandwidth=1.3), {"bandwidth": 1.3}),
    "laplace": (lambda: ik.laplace_kernel(bandwidth=0.9), {"bandwidth": 0.9}),
    "linear": (lambda: ik.linear_kernel(), {}),
    "exp": (lambda: ik.exp_kernel(), {}),
    "product": (lambda: ik.product_kernel(jnp.asarray(WK)), {"wk": WK}),
}


def samples(key, n, m, *, scale=0.6, dtype=jnp.float64, d=3):
    kx, ky = jax.random.split(key)
    return scale * jax.random.normal(kx, (n, d), dtype), scale * (0.3 + jax.random.normal(ky, (m, d), dtype))


def log_reference(kind, x, y, estimator, **params):
    """The float64 NumPy log-space MMD^2 of the very inputs (float32 inputs convert exactly)."""
    return reference.log_mmd2(np.asarray(x, np.float64), np.asarray(y, np.float64), kind, estimator=estimator, **params)


def assert_log_close(got, want, absolute_error_bound):
    """``got`` (LogMMD2) against ``want`` (LogSum) given a bound on |got - want| in linear space (see the module docstring)."""
    delta = absolute_error_bound * math.exp(float(want.log_terms) - float(want.log_abs)) if np.isfinite(want.log_terms) else 0.0
    assert delta < 0.5, ("the case cancels too much for a relative check", delta)
    assert float(got.sign) == float(want.sign)
    assert abs(float(got.log_abs) - float(want.log_abs)) <= -math.log1p(-delta), (float(got.log_abs), float(want.log_abs), delta)


@pytest.mark.parametrize("block", [None, 4])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("kind", KERNELS)
def test_log_mmd2_matches_the_float64_reference(key, kind, estimator, dtype, block):
    """Every kernel, estimator, dtype, dense and tiled (4-row tiles: diagonal, off-diagonal and overlapping tiles)."""
    n, m = 10, 13
    x, y = samples(key, n, m, dtype=dtype)
    y = y + 0.8                                   # a clear difference: the relative check stays meaningful
    got = log_mmd2(x, y, KERNELS[kind][0](), estimator=estimator, block_size=block)
    assert isinstance(got, mmd_module.LogMMD2) and got.log_abs.dtype == dtype and got.sign.dtype == dtype
    want = log_reference(kind, x, y, estimator, **KERNELS[kind][1])
    assert_log_close(got, want, ((n + m) ** 2 + 64) * float(np.finfo(dtype).eps))


def _outlier_pair(x, logit):
    """Rows 0 and 1 of ``x`` set to one point ``v`` with ``v . v = logit``: exp-kernel entries e^logit (off the diagonal too)."""
    v = jnp.zeros(x.shape[1], x.dtype).at[0].set(jnp.sqrt(jnp.asarray(logit, x.dtype)))
    return x.at[:2].set(v)


@pytest.mark.parametrize("block", [None, 4])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize(("dtype", "logit"), [(jnp.float64, 1000.0), (jnp.float32, 120.0)])
def test_log_mmd2_beyond_the_dtype_range(key, dtype, logit, estimator, block):
    """exp kernel, largest logit past the dtype's exp range by far: MMD^2 ~ e^logit / n^2 is not representable.

    mmd2 raises the overflow error; log_mmd2 gives its logarithm, equal to the float64 log-space
    reference within the bound of the module docstring with L = logit.
    """
    n, m, d = 10, 13, 3
    x, y = samples(key, n, m, scale=0.3, dtype=dtype)
    x = _outlier_pair(x, logit)
    want = log_reference("exp", x, y, estimator)
    assert want.log_abs > math.log(float(jnp.finfo(dtype).max)) + 10      # far beyond the range
    with pytest.raises(ValueError, match=f"overflows {jnp.dtype(dtype).name}"):
        ik.mmd2(x, y, ik.exp_kernel(), estimator=estimator, block_size=block)
    got = log_mmd2(x, y, ik.exp_kernel(), estimator=estimator, block_size=block)
    assert_log_close(got, want, ((n + m) ** 2 + 8 * (d + 2) * logit) * float(np.finfo(dtype).eps))


@pytest.mark.parametrize("block", [None, 2])
def test_log_mmd2_against_exact_arithmetic(block):
    """A small float64 case at logits ~ 1000, against the exact sum in mpmath (50 digits) of the same float64 inputs."""
    x = np.array([[31.6, 0.5, -0.2], [31.7, 0.1, 0.3], [0.4, -0.3, 0.2]])
    y = np.array([[0.1, 0.2, 0.3], [-0.5, 0.6, 0.1]])
    n, m, d = len(x), len(y), x.shape[1]
    mpmath.mp.dps = 50

    def kernel_sum(a, b):
        return [mpmath.exp(mpmath.fsum(mpmath.mpf(float(p)) * mpmath.mpf(float(q)) for p, q in zip(u, v, strict=True)))
                for u in a for v in b]

    xx, yy, xy = kernel_sum(x, x), kernel_sum(y, y), kernel_sum(x, y)
    terms = [t / n**2 for t in xx] + [t / m**2 for t in yy] + [-2 * t / (n * m) for t in xy]
    exact, absolute = mpmath.fsum(terms), mpmath.fsum(abs(t) for t in terms)
    largest_logit = float(np.max(x @ x.T))
    assert largest_logit > 1000 and exact > 0
    got = log_mmd2(jnp.asarray(x), jnp.asarray(y), ik.exp_kernel(), block_size=block)
    delta = ((n + m) ** 2 + 8 * (d + 2) * largest_logit) * float(np.finfo(np.float64).eps) * float(absolute / exact)
    assert delta < 0.5 and float(got.sign) == 1.0
    assert abs(float(got.log_abs) - float(mpmath.log(exact))) <= -math.log1p(-delta)


@pytest.mark.parametrize("block", [None, 4])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("kind", ["exp", "product"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_representable_mmd2_near_the_dtype_maximum_is_finite(key, dtype, kind, estimator, block):
    """Entries past the dtype's maximum, MMD^2 itself representable (~ 4 e max / n^2): mmd2 is finite, never inf.

    exp kernel at logit L = log(max) + 1 (each entry e * max); product kernel at L = log(max) - log(log(max)) + 1
    (entries L e^L > max). Error as in the module docstring with this L.
    """
    n, m, d = 10, 13, 3
    log_max = math.log(float(jnp.finfo(dtype).max))
    logit = log_max + 1 if kind == "exp" else log_max - math.log(log_max) + 1
    x, y = samples(key, n, m, scale=0.3, dtype=dtype)
    x = _outlier_pair(x, logit)
    params = {"wk": np.eye(3)[:2]} if kind == "product" else {}
    kernel = ik.product_kernel(jnp.eye(3, dtype=dtype)[:2]) if kind == "product" else ik.exp_kernel()
    want = log_reference(kind, x, y, estimator, **params)
    assert want.log_abs < log_max - 0.5 and want.log_terms > log_max - 5     # representable, and near the top
    got = float(ik.mmd2(x, y, kernel, estimator=estimator, block_size=block))
    assert np.isfinite(got)
    bound = ((n + m) ** 2 + 8 * (d + 2) * logit) * float(np.finfo(dtype).eps) * math.exp(float(want.log_terms))
    assert abs(got - float(want.sign) * math.exp(float(want.log_abs))) <= bound, (got, float(want.log_abs))


BAD = [
    (lambda x, y, k: log_mmd2(x[:1], y, k, estimator="unbiased"), "x", "(1, 3)"),
    (lambda x, y, k: log_mmd2(x[:0], y, k), "x", "(0, 3)"),
    (lambda x, y, k: log_mmd2(x, y[:, :2], k), "y", "(13, 2)"),
    (lambda x, y, k: log_mmd2(x, y.astype(jnp.float32), k), "y", "float32"),
    (lambda x, y, k: log_mmd2(x, y.at[2, 1].set(jnp.inf), k), "y", "non-finite"),
    (lambda x, y, k: log_mmd2(x.at[0, 0].set(jnp.nan), y, k, block_size=4), "x", "non-finite"),
    (lambda x, y, k: log_mmd2(np.asarray(x), y.at[0, 0].set(jnp.nan), k), "y", "non-finite"),
    (lambda x, y, k: log_mmd2(x, y, k, estimator="bogus"), "estimator", "bogus"),
    (lambda x, y, k: log_mmd2(x, y, k, block_size=0), "block_size", "0"),
    (lambda x, y, k: log_mmd2(x, y, "exp"), "kernel", "str"),
    (lambda x, y, k: log_mmd2(x[:, :2], y[:, :2], ik.product_kernel(WK)), "x", "(10, 2)"),
    (lambda x, y, k: ik.mmd2(x, y.at[3, 0].set(-jnp.inf), ik.linear_kernel(), block_size=4), "y", "non-finite"),
    (lambda x, y, k: ik.mmd2(x.at[1, 2].set(jnp.inf), y, ik.laplace_kernel(bandwidth=1.0), block_size=4), "x", "non-finite"),
]


@pytest.mark.parametrize("call,name,detail", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_inputs_name_argument_and_shape(key, call, name, detail):
    """ValueError naming the argument and its shape; non-finite entries found inside the program are named too."""
    x, y = samples(key, 10, 13)
    with pytest.raises(ValueError) as err:
        call(x, y, ik.exp_kernel())
    assert name in str(err.value) and detail in str(err.value), str(err.value)


def test_jit_and_vmap(key):
    """log_mmd2 traces (no host checks under a transformation) and gives the eager result."""
    x, y = samples(key, 9, 11)
    kernel = ik.exp_kernel()
    eager = log_mmd2(x, y, kernel)
    jitted = jax.jit(lambda a, b: log_mmd2(a, b, kernel))(x, y)
    np.testing.assert_allclose(jitted.log_abs, eager.log_abs, rtol=1e-13)
    assert float(jitted.sign) == float(eager.sign)
    batched = jax.vmap(lambda b: log_mmd2(x, b, kernel, block_size=4))(jnp.stack([y, y + 1.0]))
    np.testing.assert_allclose(batched.log_abs[1], log_mmd2(x, y + 1.0, kernel, block_size=4).log_abs, rtol=1e-12)


def test_the_finiteness_check_inside_the_program_is_exact_and_keeps_no_copy():
    """NaN, +inf, -inf in either sample are found; huge finite entries (whose plain sum overflows) are not flagged;
    the tiled program's temporaries stay those of its tiles (no array of the inputs' size)."""
    from iclkd_jax.mmd import _inputs_finite, _mmd2_blocked
    x = jnp.ones((300, 3))
    for bad in (jnp.nan, jnp.inf, -jnp.inf):
        assert not bool(_inputs_finite(x.at[5, 1].set(bad), x)) and not bool(_inputs_finite(x, x.at[7, 2].set(bad)))
    assert bool(_inputs_finite(x * 1e308, -x * 1e308))
    big = jnp.ones((20_000, 64), jnp.float32)
    compiled = _mmd2_blocked.lower(big, big, ik.rbf_kernel(bandwidth=3.0), False, 512, False).compile()
    assert compiled.memory_analysis().temp_size_in_bytes < big.nbytes / 4   # a boolean copy of both is big.nbytes / 2
