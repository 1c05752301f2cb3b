"""Boundary validation helpers: named ValueErrors, no value checks on tracers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclkd_jax import _validation as V


@pytest.mark.parametrize("value,kwargs,message", [
    (None, {}, "arr must be an array"),
    (np.ones((2, 3), np.int32), {}, "floating dtype"),
    (jnp.ones((2, 3)), {"ndim": 1}, "(2, 3)"),
    (jnp.ones((0, 3)), {"min_rows": 1}, "(0, 3)"),
    (jnp.ones((2, 0)), {}, "empty dimension"),
    (jnp.ones((2, 3)), {"last_dim": 4}, "last dimension 4"),
    (jnp.array([1.0, jnp.inf]), {}, "non-finite"),
    ("abc", {}, "could not be converted"),
])
def test_as_float_array_errors_name_the_argument(value, kwargs, message):
    with pytest.raises(ValueError) as err:
        V.as_float_array(value, "arr", **kwargs)
    assert "arr" in str(err.value) and message in str(err.value)


def test_lists_become_default_floats_and_tracers_skip_value_checks():
    assert V.as_float_array([[1, 2]], "a").dtype == jnp.float64
    out = jax.jit(lambda a: V.as_float_array(a, "a", ndim=1) * 1.0)(jnp.array([jnp.nan]))
    assert np.isnan(np.asarray(out)).all()               # under jit the caller owns the values


def test_scalars_and_dtypes():
    with pytest.raises(ValueError, match="mismatched dtypes.*a: float32"):
        V.check_same_dtype(a=jnp.ones(2, jnp.float32), b=jnp.ones(2))
    for bad in (0, -1.0, np.nan, np.inf, [1.0]):
        with pytest.raises(ValueError, match="s"):
            V.positive_scalar(bad, "s")
    for bad in (True, 1.5, 0):
        with pytest.raises(ValueError, match="k"):
            V.positive_int(bad, "k")
    assert V.positive_int(np.int64(3), "k") == 3
