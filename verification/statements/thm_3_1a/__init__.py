"""Theorem 3.1(a), attention as W_0 phi(q) + ΔW phi(q) (docs/statements.md#thm-3-1a).

The folder holds everything the suite knows about the statement: ``check.py`` (the check and its mutants),
``certificate.py`` (its certificate claims). This module registers the check with the hooks it offers
(verification.core.protocol).
"""

from __future__ import annotations

from verification.core.registry import register
from verification.statements.thm_3_1a import check, margin


@register
class Theorem31a(check.Theorem31a):
    """Theorem 3.1(a), attention as W_0 phi(q) + ΔW phi(q): the check of ``check.py`` with its hooks."""

    false_alarm_margin = margin.MARGIN
    @staticmethod
    def certificate_claims(worst_case: dict) -> list:
        from verification.statements.thm_3_1a import certificate  # here: python-flint is optional (certify)

        return certificate.claims(worst_case)
