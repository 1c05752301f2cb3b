"""Boundary validation for public functions (plain Python, outside traced code).

Every public function of :mod:`iclkd_jax` calls these helpers before it reaches
``jax.jit``; a bad input therefore raises a ``ValueError`` naming the argument and
its shape instead of producing a deep JAX traceback or a silent NaN. Value checks
(finiteness, positivity) are skipped for tracers: under an outer ``jax.jit`` the
values are not known, and the caller owns them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_tracer(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def as_float_array(x: Any, name: str, *, ndim: int | None = None, min_rows: int | None = None,
                   last_dim: int | None = None) -> jax.Array:
    """Converts ``x`` to a floating JAX array and checks rank, rows, width and finiteness.

    Integer or boolean arrays are rejected rather than silently promoted, because a
    silent promotion would change the dtype contract ("float32 in, float32 out").
    Python scalars and nested lists are converted to JAX's default float dtype.
    """
    if x is None:
        raise ValueError(f"{name} must be an array, got None")
    if not hasattr(x, "dtype"):
        try:
            x = jnp.asarray(x, dtype=jnp.result_type(float))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} could not be converted to a float array: {err}") from None
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name} must have a floating dtype, got {x.dtype} with shape {tuple(x.shape)}")
    if not isinstance(x, jax.Array):
        x = jnp.asarray(x)
    shape = tuple(x.shape)
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {shape}")
    if min_rows is not None and shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} row(s), got shape {shape}")
    if last_dim is not None and shape[-1] != last_dim:
        raise ValueError(f"{name} must have last dimension {last_dim}, got shape {shape}")
    if any(s == 0 for s in shape[1:]):
        raise ValueError(f"{name} has an empty dimension: shape {shape}")
    check_finite(x, name)
    return x


def check_finite(x: jax.Array, name: str) -> None:
    if is_tracer(x) or x.size == 0:
        return
    if not bool(np.all(np.isfinite(np.asarray(x)))):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(np.asarray(x))))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or Inf); shape {tuple(x.shape)}")


def check_same_dtype(**arrays: jax.Array) -> jnp.dtype:
    """All named arrays must share one floating dtype; returns it."""
    dtypes = {name: a.dtype for name, a in arrays.items()}
    if len(set(dtypes.values())) > 1:
        described = ", ".join(f"{n}: {d} {tuple(arrays[n].shape)}" for n, d in dtypes.items())
        raise ValueError(f"mismatched dtypes ({described}); cast them to one floating dtype")
    return next(iter(dtypes.values()))


def positive_scalar(value: Any, name: str) -> Any:
    """A strictly positive finite scalar (a concrete number, or a tracer left unchecked)."""
    if is_tracer(value):
        return value
    arr = np.asarray(value)
    if arr.shape != ():
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    if not np.isfinite(arr) or arr <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return value


def positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)
