"""Errors that turn a check's result into status ``error`` (``iclkd verify`` exits 3) instead of a verdict."""

from __future__ import annotations

from typing import Any


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
