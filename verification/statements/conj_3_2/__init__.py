"""Conjecture 3.2', the deviation term's rate (docs/statements.md#conj-3-2).

The folder holds everything the suite knows about the statement: ``check.py`` (the check and its mutants).
This module registers the check with the hooks it offers (verification.core.protocol).
"""

from __future__ import annotations

from verification.core.protocol import not_applicable
from verification.core.registry import register
from verification.statements.conj_3_2 import check, margin


@register
class Conjecture32(check.Conjecture32):
    """Conjecture 3.2', the deviation term's rate: the check of ``check.py`` with its hooks."""

    false_alarm_margin = margin.MARGIN
    certificate_claims = not_applicable("a rate conjecture judged statistically over many draws; no single instance decid"
                                        "es it")
