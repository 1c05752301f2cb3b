"""Theorem 3.2, the Rademacher generalisation bound (docs/statements.md#thm-3-2).

The folder holds everything the suite knows about the statement: ``check.py`` (the check and its mutants),
``search.py`` (its worst-case search targets), ``tightness.py`` (its tightness cells). This module registers
the check with the hooks it offers (verification.core.protocol).
"""

from __future__ import annotations

from verification.core.protocol import not_applicable
from verification.core.registry import register
from verification.statements.thm_3_2 import check, margin, search, tightness


@register
class Theorem32(check.Theorem32):
    """Theorem 3.2, the Rademacher generalisation bound: the check of ``check.py`` with its hooks."""

    false_alarm_margin = margin.MARGIN
    search_targets = staticmethod(search.targets)
    tightness_cells = staticmethod(tightness.cells)
    tightness_fits = staticmethod(tightness.fits)
    tightness_figures = staticmethod(tightness.figure)
    tightness_table = tightness.TABLE

    certificate_claims = not_applicable("probabilistic (a bound that holds with probability >= 1 - delta over the draw): "
                                        "judged by a binomial confidence interval over draws, not by one instance")
