"""the step-size lemma: its check (``check.py``) and everything else the suite knows about it."""

from verification.statements.lemma_eta import check  # noqa: F401  (registers the check)
