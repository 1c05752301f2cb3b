"""The independent float64 reference every verdict of ``iclkd verify`` is compared with.

Written from THEOREMS.md in plain NumPy (and SciPy where it helps), with no import of
``iclkd_jax`` (``tests/verification/test_reference.py`` enforces it): a bug planted in the
library cannot also be in the value it is judged against. Each function cites the
statement of THEOREMS.md it implements.
"""

from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------------------
# Attention, its split, D' and eta, operators in representer form, feature maps
# (Theorem 3.1, the learning-rate lemma, the linear special case).
# ----------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------
# Kernels and MMD^2 (V and U statistics), operator norms, the supremum gap of Theorem 3.2,
# the Rademacher closed form (Theorems 3.2, 4.1, 4.2, Conjecture 4.1).
# ----------------------------------------------------------------------------------------
