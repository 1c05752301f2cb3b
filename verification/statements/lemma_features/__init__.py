"""The feature-map lemma, random features at their predicted rates (docs/statements.md#lemma-features).

The folder holds everything the suite knows about the statement: ``check.py`` (the check and its mutants),
``search.py`` (its worst-case search targets), ``tightness.py`` (its tightness cells). This module registers
the check with the hooks it offers (verification.core.protocol).
"""

from __future__ import annotations

from verification.core.protocol import not_applicable
from verification.core.registry import register
from verification.statements.lemma_features import check, margin, search, tightness


@register
class LemmaFeatures(check.LemmaFeatures):
    """The feature-map lemma, random features at their predicted rates: the check of ``check.py`` with its hooks."""

    false_alarm_margin = margin.MARGIN
    search_targets = staticmethod(search.targets)
    tightness_cells = staticmethod(tightness.cells)
    tightness_fits = staticmethod(tightness.fits)
    tightness_figures = staticmethod(tightness.figure)
    tightness_table = tightness.TABLE

    certificate_claims = not_applicable("random-feature rates and variances are statistical statements (confidence interv"
                                        "als)")
