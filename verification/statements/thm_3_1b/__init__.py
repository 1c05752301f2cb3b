"""Theorem 3.1(b): its check (``check.py``) and everything else the suite knows about it."""

from verification.statements.thm_3_1b import check  # noqa: F401  (registers the check)
