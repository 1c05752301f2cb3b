"""The verification suite: every statement of docs/statements.md as an executable, self-testing check.

Writing a check of your own (outside the project): :mod:`verification.api` is the one stable
place for everything a check needs, and ``iclkd verify --plugin FILE`` runs it (docs/extending.md).

The package is layered; imports point downward only (``lint-imports`` checks it, contracts in
pyproject.toml): ``cli`` and ``api`` on top, then ``io`` (command line, reports), ``engine`` (runner,
self-test, plugins, distributed map, certify and search drivers), ``real_models``, ``statements`` (one
folder per statement), ``search`` (the ascent engine), ``cases`` (case generation, batch numerics),
``oracles`` (NumPy/SciPy references, ball arithmetic; no JAX) and ``core`` (the check model, the
extension protocol, the registry, errors, process identity, tolerances, keys, atomic outputs).

Importing this package changes no global state. Verification runs in float64: the ``iclkd``
entry point switches it on, and so does :func:`engine.runner.run_check` for the duration of a check;
library users who compute with the suite's pieces themselves call :func:`enable_x64` (for the whole
process) or use it as a context manager (restored on exit)::

    import verification
    verification.enable_x64()            # float64 from now on
    with verification.enable_x64():      # float64 inside the block only
        ...
"""

from __future__ import annotations

from verification.core.model import PROFILES, Check, CheckResult, RunContext
from verification.core.registry import register


class enable_x64:  # noqa: N801  (used like a function: ``verification.enable_x64()``)
    """Switches JAX's float64 mode on (or off with ``enabled=False``) for the process.

    As a context manager it also holds the mode for the block even inside another scoped setting
    (``jax.enable_x64(False)``), and restores the process-wide mode on exit.
    """

    def __init__(self, enabled: bool = True):
        import jax  # here: importing the package (the parent of the JAX-free oracles) must not import JAX

        self.enabled = bool(enabled)
        self.previous = bool(jax.enable_x64.get_global())
        self._scope = None
        jax.config.update("jax_enable_x64", self.enabled)

    def __enter__(self) -> enable_x64:
        import jax  # see __init__

        self._scope = jax.enable_x64(self.enabled)
        self._scope.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        import jax  # see __init__

        self._scope.__exit__(*exc)
        jax.config.update("jax_enable_x64", self.previous)


__all__ = ["PROFILES", "Check", "CheckResult", "RunContext", "enable_x64", "register"]
