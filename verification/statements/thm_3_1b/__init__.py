"""Theorem 3.1(b), W_0 as one knowledge-distillation step (docs/statements.md#thm-3-1b).

The folder holds everything the suite knows about the statement: ``check.py`` (the check and its mutants),
``certificate.py`` (its certificate claims). This module registers the check with the hooks it offers
(verification.core.protocol).
"""

from __future__ import annotations

from verification.core.registry import register
from verification.statements.thm_3_1b import check, margin


@register
class Theorem31b(check.Theorem31b):
    """Theorem 3.1(b), W_0 as one knowledge-distillation step: the check of ``check.py`` with its hooks."""

    false_alarm_margin = margin.MARGIN
    @staticmethod
    def certificate_claims(worst_case: dict) -> list:
        from verification.statements.thm_3_1b import certificate  # here: python-flint is optional (certify)

        return certificate.claims(worst_case)
