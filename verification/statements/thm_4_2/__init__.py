"""Theorem 4.2, the bias propagates to predictions and the KD risk (docs/statements.md#thm-4-2).

The folder holds everything the suite knows about the statement: ``check.py`` (the check and its mutants),
``search.py`` (its worst-case search targets), ``certificate.py`` (its certificate claims), ``tightness.py``
(its tightness cells). This module registers the check with the hooks it offers (verification.core.protocol).
"""

from __future__ import annotations

from verification.core.registry import register
from verification.statements.thm_4_2 import check, margin, search, tightness


@register
class Theorem42(check.Theorem42):
    """Theorem 4.2, the bias propagates to predictions and the KD risk: the check of ``check.py`` with its hooks."""

    false_alarm_margin = margin.MARGIN
    search_targets = staticmethod(search.targets)
    tightness_cells = staticmethod(tightness.cells)
    tightness_figures = staticmethod(tightness.figure)

    @staticmethod
    def certificate_claims(worst_case: dict) -> list:
        from verification.statements.thm_4_2 import certificate  # here: python-flint is optional (certify)

        return certificate.claims(worst_case)
