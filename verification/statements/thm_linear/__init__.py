"""the linear-attention theorem: its check (``check.py``) and everything else the suite knows about it."""

from verification.statements.thm_linear import check  # noqa: F401  (registers the check)
