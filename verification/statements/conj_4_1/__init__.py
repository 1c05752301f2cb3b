"""Conjecture 4.1', any characteristic kernel (docs/statements.md#conj-4-1).

The folder holds everything the suite knows about the statement: ``check.py`` (the check and its mutants),
``search.py`` (its worst-case search targets), ``certificate.py`` (its certificate claims), ``tightness.py``
(its tightness cells). This module registers the check with the hooks it offers (verification.core.protocol).
"""

from __future__ import annotations

from verification.core.registry import register
from verification.statements.conj_4_1 import check, margin, search, tightness


@register
class Conjecture41(check.Conjecture41):
    """Conjecture 4.1', any characteristic kernel: the check of ``check.py`` with its hooks."""

    false_alarm_margin = margin.MARGIN
    search_targets = staticmethod(search.targets)
    tightness_cells = staticmethod(tightness.cells)

    @staticmethod
    def certificate_claims(worst_case: dict) -> list:
        from verification.statements.conj_4_1 import certificate  # here: python-flint is optional (certify)

        return certificate.claims(worst_case)
