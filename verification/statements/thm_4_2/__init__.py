"""Theorem 4.2: its check (``check.py``) and everything else the suite knows about it."""

from verification.statements.thm_4_2 import check  # noqa: F401  (registers the check)
