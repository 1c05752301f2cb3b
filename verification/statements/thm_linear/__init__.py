"""The linear special case, dual form and one GD step (docs/statements.md#thm-linear).

The folder holds everything the suite knows about the statement: ``check.py`` (the check and its mutants),
``certificate.py`` (its certificate claims). This module registers the check with the hooks it offers
(verification.core.protocol).
"""

from __future__ import annotations

from verification.core.registry import register
from verification.statements.thm_linear import check, margin


@register
class TheoremLinear(check.TheoremLinear):
    """The linear special case, dual form and one GD step: the check of ``check.py`` with its hooks."""

    false_alarm_margin = margin.MARGIN
    @staticmethod
    def certificate_claims(worst_case: dict) -> list:
        from verification.statements.thm_linear import certificate  # here: python-flint is optional (certify)

        return certificate.claims(worst_case)
