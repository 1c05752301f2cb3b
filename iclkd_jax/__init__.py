"""iclkd-jax: numerical verification of "in-context learning is implicit knowledge distillation".

The mathematics is specified in THEOREMS.md; ``docs/theorems.md`` states each statement with its
check and what the suite found. All
functions are pure, jit-compatible and keep the dtype they are given; inputs are
validated at the boundary with ``ValueError``.
"""

from iclkd_jax._compile import trace_counts
from iclkd_jax.attention import (
    AttentionWeights,
    KDDecomposition,
    kd_decomposition,
    log_partition,
    softmax_attention,
    validate_weights,
)
from iclkd_jax.features import (
    FeatureMap,
    identity_features,
    positive_random_features,
    taylor_features,
    trig_random_features,
)
from iclkd_jax.kernels import (
    Kernel,
    exp_kernel,
    laplace_kernel,
    linear_kernel,
    median_bandwidth,
    product_kernel,
    rbf_kernel,
    squared_distances,
)
from iclkd_jax.linear import (
    LSAWeights,
    gd_step_prediction,
    linear_attention,
    linear_dual_weights,
    lsa_layer,
    lsa_prediction,
    lsa_query_tokens,
    lsa_tokens,
    von_oswald_weights,
)
from iclkd_jax.mmd import PermutationTestResult, mmd, mmd2, mmd2_from_features, mmd_permutation_test
from iclkd_jax.operators import (
    HSNorm,
    RepresenterOperator,
    add_operators,
    apply_operator,
    attention_operators,
    distilled_weights,
    hs_norm,
    kd_loss,
    student,
    teacher,
    to_matrix,
)
from iclkd_jax.quadratic import BallMaximum, EigenbasisMaximum, max_quadratic_in_eigenbasis, max_quadratic_on_ball
from iclkd_jax.rademacher import RademacherEstimate, rademacher_closed_form, rademacher_complexity, rademacher_exact
from iclkd_jax.random import random_attention_weights
from iclkd_jax.shift import distilled_weight_difference, kd_risk

__version__ = "0.1.0"

__all__ = [
    "AttentionWeights", "FeatureMap", "HSNorm", "KDDecomposition", "Kernel", "RepresenterOperator",
    "add_operators", "apply_operator", "attention_operators", "distilled_weight_difference", "distilled_weights",
    "exp_kernel", "hs_norm",
    "identity_features", "kd_decomposition", "kd_loss", "kd_risk", "laplace_kernel", "linear_kernel", "log_partition",
    "median_bandwidth", "mmd", "mmd2", "mmd2_from_features", "mmd_permutation_test", "PermutationTestResult",
    "positive_random_features", "product_kernel",
    "random_attention_weights", "rbf_kernel", "softmax_attention", "squared_distances", "student",
    "taylor_features", "teacher", "to_matrix", "trace_counts", "trig_random_features", "validate_weights",
    "LSAWeights", "gd_step_prediction", "linear_attention", "linear_dual_weights", "lsa_layer", "lsa_prediction",
    "lsa_query_tokens", "lsa_tokens", "von_oswald_weights",
    "BallMaximum", "EigenbasisMaximum", "max_quadratic_in_eigenbasis", "max_quadratic_on_ball",
    "RademacherEstimate", "rademacher_closed_form", "rademacher_complexity", "rademacher_exact",
]
