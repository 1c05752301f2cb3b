"""The verification suite: every statement of THEOREMS.md as an executable, self-testing check."""

import jax

# Verification runs in float64 (THEOREMS.md: tolerances are derived for float64 unless a check says otherwise).
jax.config.update("jax_enable_x64", True)

from verification.registry import PROFILES, Check, CheckResult, RunContext, all_checks, register  # noqa: E402

__all__ = ["PROFILES", "Check", "CheckResult", "RunContext", "all_checks", "register"]
