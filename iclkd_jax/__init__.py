"""iclkd-jax: numerical verification of "in-context learning is implicit knowledge distillation".

The mathematics is specified in docs/statements.md; ``docs/theorems.md`` states each statement with its
check and what the suite found. All
functions are pure, jit-compatible and keep the dtype they are given; inputs are
validated at the boundary with ``ValueError``.
"""

# ruff: noqa: I001 (optax style: one public name per import line, grouped by module)
from iclkd_jax._compile import trace_counts
from iclkd_jax.attention import AttentionWeights
from iclkd_jax.attention import KDDecomposition
from iclkd_jax.attention import attention_operators
from iclkd_jax.attention import kd_decomposition
from iclkd_jax.attention import log_partition
from iclkd_jax.attention import softmax_attention
from iclkd_jax.attention import validate_tokens
from iclkd_jax.attention import validate_weights
from iclkd_jax.distillation import distilled_weight_difference
from iclkd_jax.distillation import distilled_weights
from iclkd_jax.distillation import kd_loss
from iclkd_jax.distillation import kd_risk
from iclkd_jax.distillation import student
from iclkd_jax.distillation import teacher
from iclkd_jax.features import FeatureMap
from iclkd_jax.features import identity_features
from iclkd_jax.features import positive_random_features
from iclkd_jax.features import taylor_features
from iclkd_jax.features import trig_random_features
from iclkd_jax.kernels import Kernel
from iclkd_jax.kernels import exp_kernel
from iclkd_jax.kernels import laplace_kernel
from iclkd_jax.kernels import linear_kernel
from iclkd_jax.kernels import median_bandwidth
from iclkd_jax.kernels import product_kernel
from iclkd_jax.kernels import rbf_kernel
from iclkd_jax.kernels import squared_distances
from iclkd_jax.linear import LSAWeights
from iclkd_jax.linear import gd_step_prediction
from iclkd_jax.linear import linear_attention
from iclkd_jax.linear import linear_dual_weights
from iclkd_jax.linear import lsa_layer
from iclkd_jax.linear import lsa_prediction
from iclkd_jax.linear import lsa_query_tokens
from iclkd_jax.linear import lsa_tokens
from iclkd_jax.linear import von_oswald_weights
from iclkd_jax.mmd import LogMMD2
from iclkd_jax.mmd import PermutationTestResult
from iclkd_jax.mmd import default_block_size
from iclkd_jax.mmd import log_mmd2
from iclkd_jax.mmd import mmd
from iclkd_jax.mmd import mmd2
from iclkd_jax.mmd import mmd2_from_features
from iclkd_jax.mmd import mmd_permutation_test
from iclkd_jax.operators import HSNorm
from iclkd_jax.operators import RepresenterOperator
from iclkd_jax.operators import add_operators
from iclkd_jax.operators import apply_operator
from iclkd_jax.operators import hs_norm
from iclkd_jax.operators import operator_norm
from iclkd_jax.operators import to_matrix
from iclkd_jax.quadratic import BallMaximum
from iclkd_jax.quadratic import EigenbasisMaximum
from iclkd_jax.quadratic import max_quadratic_in_eigenbasis
from iclkd_jax.quadratic import max_quadratic_on_ball
from iclkd_jax.rademacher import RademacherEstimate
from iclkd_jax.rademacher import rademacher_closed_form
from iclkd_jax.rademacher import rademacher_complexity
from iclkd_jax.rademacher import rademacher_exact
from iclkd_jax.random import random_attention_weights

__version__ = "0.1.0"

__all__ = [
    "add_operators",
    "apply_operator",
    "attention_operators",
    "AttentionWeights",
    "BallMaximum",
    "default_block_size",
    "distilled_weight_difference",
    "distilled_weights",
    "EigenbasisMaximum",
    "exp_kernel",
    "FeatureMap",
    "gd_step_prediction",
    "hs_norm",
    "HSNorm",
    "identity_features",
    "kd_decomposition",
    "kd_loss",
    "kd_risk",
    "KDDecomposition",
    "Kernel",
    "laplace_kernel",
    "linear_attention",
    "linear_dual_weights",
    "linear_kernel",
    "log_mmd2",
    "log_partition",
    "LogMMD2",
    "lsa_layer",
    "lsa_prediction",
    "lsa_query_tokens",
    "lsa_tokens",
    "LSAWeights",
    "max_quadratic_in_eigenbasis",
    "max_quadratic_on_ball",
    "median_bandwidth",
    "mmd",
    "mmd2",
    "mmd2_from_features",
    "mmd_permutation_test",
    "operator_norm",
    "PermutationTestResult",
    "positive_random_features",
    "product_kernel",
    "rademacher_closed_form",
    "rademacher_complexity",
    "rademacher_exact",
    "RademacherEstimate",
    "random_attention_weights",
    "rbf_kernel",
    "RepresenterOperator",
    "softmax_attention",
    "squared_distances",
    "student",
    "taylor_features",
    "teacher",
    "to_matrix",
    "trace_counts",
    "trig_random_features",
    "validate_tokens",
    "validate_weights",
    "von_oswald_weights",
]
