"""the feature-map lemma: its check (``check.py``) and everything else the suite knows about it."""

from verification.statements.lemma_features import check  # noqa: F401  (registers the check)
