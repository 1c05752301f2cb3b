"""``jax.jit`` with a trace counter, so tests can prove that hot functions do not recompile."""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable
from typing import Any

import jax

_TRACE_COUNTS: collections.Counter[str] = collections.Counter()


def counted_jit(fun: Callable[..., Any] | None = None, /, **jit_kwargs: Any) -> Any:
    """Like ``jax.jit``; each trace of ``fun`` increments ``trace_counts()[fun.__qualname__]``.

    The increment is a Python side effect, so it runs only while JAX traces the
    function, never on a cached call.
    """
    if fun is None:
        return functools.partial(counted_jit, **jit_kwargs)
    key = f"{fun.__module__}.{fun.__qualname__}"

    @functools.wraps(fun)
    def traced(*args: Any, **kwargs: Any) -> Any:
        _TRACE_COUNTS[key] += 1
        return fun(*args, **kwargs)

    return jax.jit(traced, **jit_kwargs)


def trace_counts() -> dict[str, int]:
    """How many times each ``counted_jit`` function has been traced in this process."""
    return dict(_TRACE_COUNTS)
