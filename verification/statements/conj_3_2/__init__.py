"""Conjecture 3.2: its check (``check.py``) and everything else the suite knows about it."""

from verification.statements.conj_3_2 import check  # noqa: F401  (registers the check)
