"""The verification suite: every statement of THEOREMS.md as an executable, self-testing check.

Writing a check of your own (outside the project): :mod:`verification.api` is the one stable
place for everything a check needs, and ``iclkd verify --plugin FILE`` runs it (:mod:`verification.plugins`).

Importing this package changes no global state. Verification runs in float64: the ``iclkd``
entry point switches it on, and so does :func:`runner.run_check` for the duration of a check;
library users who compute with the suite's pieces themselves call :func:`enable_x64` (for the whole
process) or use it as a context manager (restored on exit)::

    import verification
    verification.enable_x64()            # float64 from now on
    with verification.enable_x64():      # float64 inside the block only
        ...
"""

from __future__ import annotations

from verification.registry import PROFILES, Check, CheckResult, RunContext, all_checks, register


class enable_x64:  # noqa: N801  (used like a function: ``verification.enable_x64()``)
    """Switches JAX's float64 mode on (or off with ``enabled=False``) for the process.

    As a context manager it also holds the mode for the block even inside another scoped setting
    (``jax.enable_x64(False)``), and restores the process-wide mode on exit.
    """

    def __init__(self, enabled: bool = True):
        import jax

        self.enabled = bool(enabled)
        self.previous = bool(jax.enable_x64.get_global())
        self._scope = None
        jax.config.update("jax_enable_x64", self.enabled)

    def __enter__(self) -> enable_x64:
        import jax

        self._scope = jax.enable_x64(self.enabled)
        self._scope.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        import jax

        self._scope.__exit__(*exc)
        jax.config.update("jax_enable_x64", self.previous)


__all__ = ["PROFILES", "Check", "CheckResult", "RunContext", "all_checks", "enable_x64", "register"]
