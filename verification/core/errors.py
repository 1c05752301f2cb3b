"""Every exception the suite reports in one line, and the exit-status table of every ``iclkd`` subcommand.

:class:`NonFiniteError` turns a check's result into status ``error`` (exit 3) instead of a verdict.

Exit statuses (:class:`ExitStatus`):

====  ==========================================================================================
  0   success (every theorem and lemma holds; a benchmark or experiment finished)
  1   a theorem or lemma was violated (``verify``; ``bench tightness``: a bound below the observed
      value of a proven statement), or a ``--self-test`` mutant escaped
  2   usage, input or output error: a bad argument, an unknown id, an output path that cannot be
      written, a missing optional dependency; reported in one line before anything is computed
  3   a check or computation raised (status ``error`` in the report)
  4   ``iclkd launch``: a process died or a peer never started (one line says which and why)
 75   preempted: SIGTERM stopped a journaled run (``verify``, ``search``, ``bench tightness``,
      ``experiment``) after it journaled the unit in flight (or after the ``--grace`` period);
      one line says what remains; rerun the same command with ``--resume`` to finish
130   interrupted (Ctrl-C); no report is written as if complete
====  ==========================================================================================
"""

from __future__ import annotations

import enum
from typing import Any


class ExitStatus(enum.IntEnum):
    """The exit statuses of every ``iclkd`` subcommand (module docstring)."""

    OK = 0
    VIOLATED = 1
    USAGE = 2
    ERROR = 3
    LAUNCH_FAILED = 4  # iclkd launch: a process died or a peer never started
    PREEMPTED = 75  # SIGTERM stopped a journaled run; --resume finishes it (verification.engine.journal)
    INTERRUPTED = 130


class CommandError(Exception):
    """A failure reported in one line with an exit status (default: :attr:`ExitStatus.USAGE`)."""

    def __init__(self, message: str, status: int = ExitStatus.USAGE, *, prog: str | None = None):
        super().__init__(message)
        self.status = int(status)
        self.prog = prog  # the (sub)command the message is about; dispatch prefixes it


class PluginError(CommandError):
    """A plugin that cannot be loaded, or that registers no check (the message says which and why; exit 2)."""


class OutputError(OSError):
    """An output path that cannot be written (a folder that cannot be created, a directory given as a file)."""


class DistributedConfigError(ValueError):
    """The ICLKD_* environment of a multi-process run is malformed."""


class ModelUnavailable(RuntimeError):
    """A real model (or its optional extra) is not installed; the message says how to install it."""


class NonFiniteError(ArithmeticError):
    """A NaN or an infinity in a quantity a check judges with: the library's value, the reference's or a tolerance.

    ``violated`` means that a finite inequality failed; a comparison with a NaN or an infinity decides nothing, so
    the runner reports this as status ``error`` naming ``quantity`` and ``case`` (the case's inputs, or its index
    and a description), never as a verdict. Quantities computed by the library under test are named
    ``library ...``: such an error accuses the library (a planted bug that overflows is caught by it).
    """

    def __init__(self, quantity: str, value: Any, case: Any = None):
        self.quantity, self.value, self.case = quantity, value, case
        #: the quantity is the library's (named ``library ...``): the library, not the suite, failed to compute it
        self.library = quantity.startswith("library ")
        where = "" if case is None else f" at case {case if not isinstance(case, dict) else case.get('index', case)}"
        super().__init__(f"non-finite {quantity}: {value}{where}")
