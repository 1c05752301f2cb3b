"""counted_jit / trace_counts: a trace increments the counter, a cached call does not."""

import jax.numpy as jnp

import iclkd_jax as ik
from iclkd_jax._compile import counted_jit


def test_counts_traces_not_calls():
    @counted_jit
    def double(x):
        return 2 * x

    name = f"{double.__module__}.test_counts_traces_not_calls.<locals>.double"
    for i in range(3):
        double(jnp.ones(3) * i)
    assert ik.trace_counts()[name] == 1
    double(jnp.ones(4))                                  # a new shape traces once more
    assert ik.trace_counts()[name] == 2
    counts = ik.trace_counts()
    counts[name] = 99                                    # a copy, not the live counter
    assert ik.trace_counts()[name] == 2


def test_static_arguments_trace_per_value():
    @counted_jit(static_argnames=("p",))
    def power(x, p):
        return x**p

    name = f"{power.__module__}.test_static_arguments_trace_per_value.<locals>.power"
    power(jnp.ones(2), p=2), power(jnp.ones(2), p=2), power(jnp.ones(2), p=3)
    assert ik.trace_counts()[name] == 2
