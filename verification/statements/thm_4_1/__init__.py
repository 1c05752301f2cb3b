"""Theorem 4.1: its check (``check.py``) and everything else the suite knows about it."""

from verification.statements.thm_4_1 import check  # noqa: F401  (registers the check)
