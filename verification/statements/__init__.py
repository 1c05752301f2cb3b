"""One folder per statement of docs/statements.md; importing this package registers them all.

Each line below registers one statement (its folder holds the check and every hook of
:mod:`verification.core.protocol` it offers). The report order is each check's declared ``order``.
"""

from verification.statements import (
    conj_3_2,  # noqa: F401
    conj_4_1,  # noqa: F401
    lemma_eta,  # noqa: F401
    lemma_features,  # noqa: F401
    thm_3_1a,  # noqa: F401
    thm_3_1b,  # noqa: F401
    thm_3_2,  # noqa: F401
    thm_4_1,  # noqa: F401
    thm_4_2,  # noqa: F401
    thm_linear,  # noqa: F401
)
