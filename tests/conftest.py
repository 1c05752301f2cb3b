"""Shared fixtures: x64 on (float32 tests pass explicit float32 arrays), deterministic keys, Hypothesis profiles.

Hypothesis profiles (select with ``--hypothesis-profile NAME``):
  * ``quick`` (default): derandomised, 10 examples, no deadline — the CI run;
  * ``thorough``: derandomised, 300 examples — a long counterexample search.
"""

import os

# The suite is compilation-bound (hundreds of small XLA programs, each run a few times): LLVM's -O0
# code generation halves the wall time of the run. It changes no arithmetic (XLA keeps IEEE semantics
# at every level; fast-math stays off), only how long compiling takes and how fast the code runs.
# Benchmarks and `iclkd verify` use the default level. Set XLA_FLAGS yourself to override.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402  (after XLA_FLAGS: the flags are read when the backend starts)
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)

# JAX's persistent compilation cache under the repo's .jax_cache/ (gitignored), so a second test run skips
# XLA compilation; ICLKD_CACHE_DIR overrides the directory, ICLKD_CACHE_DIR=off disables it. Never fatal.
_cache = os.environ.get("ICLKD_CACHE_DIR", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                        ".jax_cache"))
if _cache.lower() not in ("", "0", "off", "none"):
    try:
        os.makedirs(_cache, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", _cache)
        # every program, however quick to compile: the tests compile a few hundred small programs, most under 0.1 s
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    except Exception:  # noqa: BLE001  (a read-only checkout or an old JAX, whatever it raises: run uncached)
        pass

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
