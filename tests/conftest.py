"""Shared fixtures: x64 on (float32 tests pass explicit float32 arrays), deterministic keys, Hypothesis profiles.

Hypothesis profiles (select with ``--hypothesis-profile NAME``):
  * ``quick`` (default): derandomised, 10 examples, no deadline — the CI run;
  * ``thorough``: derandomised, 300 examples — a long counterexample search.
"""

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)

settings.register_profile("quick", derandomize=True, deadline=None, max_examples=10, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", derandomize=True, deadline=None, max_examples=300, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def x64():
    """Asserts float64 is on (it is enabled for the whole test session above)."""
    assert jax.config.jax_enable_x64
    yield
