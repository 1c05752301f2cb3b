"""Theorem 3.1(a): its check (``check.py``) and everything else the suite knows about it."""

from verification.statements.thm_3_1a import check  # noqa: F401  (registers the check)
