"""The library's kernels and MMD estimators against :mod:`verification.oracles.reference` (docs/statements.md#conj-4-1,
Theorem 4.1 and Conjecture 4.1'), used by conj-4.1.

Each function returns the largest disagreement in units of its round-off budget (<= 1 agrees):

* :func:`gram_agreement`: ``Kernel.__call__`` and ``Kernel.log_gram`` of every kernel kind, entry by entry,
  within ``64 eps [|k| (1 + |log k| + E) + F]`` (:func:`gram_round_off_scale`: ``F`` the dot product's
  ``sum_d |x_d y_d|``, ``E`` the exponent's, both independent of how much the sum cancels);
* :func:`distance_agreement`: ``squared_distances`` on both branches (explicit differences, and the centred
  matmul expansion forced by ``direct_max=0``) within ``64 eps (|x - c|^2 + |y - c|^2)``, c the centre;
* :func:`estimator_agreement`: ``mmd`` (the square root of the biased MMD^2) and ``mmd2_from_features``
  (biased and unbiased, ``n != m``) against the reference V and U statistics of the linear kernel (whose
  features are the points), within ``64 eps sum|terms|``; ``median_bandwidth`` within ``64 eps``;
* :func:`permutation_test`: ``mmd_permutation_test``: the observed statistic (both estimators, ``n != m``)
  against the reference, the p-value against its definition on the returned statistics, the size under the
  null (the test is exact: ``P(p <= alpha) = floor(alpha (B+1))/(B+1)``, judged by a two-sided Clopper-Pearson
  interval at confidence ``1 - level``) and the power against a shift of 3 standard deviations (every test must
  reject; judged by the one-sided upper limit at ``1 - level`` against ``MIN_POWER``); ``level`` is the caller's,
  from the run's false-alarm budget (two judgements).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import iclkd_jax as ik
from verification.cases.shift_cases import draw_normals
from verification.core.tolerances import eps, require_finite
from verification.oracles import reference as ref

OPERATIONS = 64.0
ALPHA, MIN_POWER = 0.05, 0.9
PERMUTATIONS, SAMPLE = 99, 10


def _units(diff, scale):
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.abs(diff) / (OPERATIONS * eps(np.float64) * scale)
    require_finite({"library/reference difference": out}, allow_inf=True)
    return float(np.max(out))


def _library_kernel(kind: str, *, bandwidth=None, wk=None) -> ik.Kernel:
    return {"rbf": lambda: ik.rbf_kernel(bandwidth=bandwidth), "laplace": lambda: ik.laplace_kernel(bandwidth=bandwidth),
            "linear": ik.linear_kernel, "exp": ik.exp_kernel, "product": lambda: ik.product_kernel(wk)}[kind]()


def gram_round_off_scale(kind: str, x, y, log_abs, *, wk=None, log_unit=0.0) -> np.ndarray:
    """The absolute round-off scale of ``k(x_i, y_j)`` in units of ``exp(log_unit)`` (overflow-free for a
    ``log_unit`` of the size of ``max log|k|``): library and reference differ by at most a small multiple
    (``OPERATIONS``) of ``eps`` times it, for every input. Leading batch axes allowed (``wk``: ``(..., d_k, d)``).

    A dot product ``x . y`` over ``d`` coordinates, in any summation order, is off by at most
    ``gamma_d sum_d |x_d y_d|`` (``gamma_d = d u / (1 - d u)``, ``u = eps / 2``), once in the library and once in the
    reference: an absolute error ``<= d eps sum|x_d y_d|`` that does not shrink with ``|x . y|``. Relative to
    ``|k|`` it is ``eps`` times the dot product's condition number ``sum|x_d y_d| / |x . y|``, unbounded on the
    generator's cases (``x . y`` of two Gaussian points crosses 0), so a budget ``eps |k| (...)`` alone cannot hold.
    Per kind, with ``L = log|k|``, the scale is ``|k| (1 + |L| + E) + F``:

    * ``linear``: ``k = x . y``: ``F = sum_d |x_d y_d|``, ``E = 0``; the ``log_gram`` form's ``log`` and ``exp``
      add ``eps |k| (1 + |L|)``;
    * ``exp``: ``k = exp(u . v)``: the exponent's absolute error ``d_k eps E``, ``E = sum_k |u_k v_k|``, is a
      relative error of ``k``; ``F = 0``;
    * ``product``: ``k = (x . y) exp(s)``, ``s = (W x) . (W y)``: the linear factor's ``F = exp(s) sum_d |x_d y_d|``
      and the exponent's ``E = sum_k (|W| |x|)_k (|W| |y|)_k`` (the products ``W x`` carry ``gamma_d (|W| |x|)_k``
      each, so ``s`` is off by at most ``gamma_{d + d_k} E``);
    * ``rbf``, ``laplace``: ``L = -||x - y||^2 / (2 h^2)`` or ``-||x - y|| / h`` from explicit differences (the
      library's branch up to ``n m d = 2**18``, and ``2**22`` for Laplace): a sum of non-negative squares, relative
      error ``gamma_{d+1}``, i.e. an absolute error ``~ d eps |L|``; ``E = F = 0``.

    The operation counts are at most ``d + d_k + 3 <= 10`` on the generator's shapes (``d <= 4``, ``d_k <= 3``),
    both sides' errors added ``<= 20 < OPERATIONS = 64``.
    """
    x, y = (np.asarray(a, np.float64) for a in (x, y))
    log_abs = np.asarray(log_abs, np.float64)
    with np.errstate(over="ignore", divide="ignore"):
        magnitude = np.exp(log_abs - log_unit)
        relative = 1.0 + np.abs(np.where(np.isfinite(log_abs), log_abs, 0.0))
        if kind in ("rbf", "laplace"):
            return magnitude * relative
        abs_dot = np.einsum("...id,...jd->...ij", np.abs(x), np.abs(y))
        if kind == "linear":
            return abs_dot * np.exp(-log_unit) + magnitude * relative
        if kind == "exp":
            return magnitude * (relative + abs_dot)
        wk = np.asarray(wk, np.float64)
        kx, ky = (np.einsum("...kd,...id->...ik", wk, a) for a in (x, y))
        abs_kx, abs_ky = (np.einsum("...kd,...id->...ik", np.abs(wk), np.abs(a)) for a in (x, y))
        exponent = np.einsum("...ik,...jk->...ij", kx, ky)
        exponent_terms = np.einsum("...ik,...jk->...ij", abs_kx, abs_ky)
        linear_factor = np.exp(np.log(abs_dot) + exponent - log_unit)
    return linear_factor + magnitude * (relative + exponent_terms)


def gram_agreement(x, y, wk, bandwidth: float) -> dict:
    """``{kind: disagreement}`` of ``Kernel.__call__`` and ``Kernel.log_gram`` with the reference."""
    out = {}
    for kind in ref.KERNEL_KINDS:
        params = {"bandwidth": bandwidth} if kind in ("rbf", "laplace") else ({"wk": wk} if kind == "product" else {})
        u, v = (x @ wk.T, y @ wk.T) if kind == "exp" else (x, y)
        kernel = _library_kernel(kind, **params)
        sign, log_abs = ref.log_gram(kind, u, v, **params)
        scale = gram_round_off_scale(kind, u, v, log_abs, wk=wk)
        lib = np.asarray(kernel(jnp.asarray(u), jnp.asarray(v)))
        lib_sign, lib_log = (np.asarray(a) for a in kernel.log_gram(jnp.asarray(u), jnp.asarray(v)))
        with np.errstate(invalid="ignore", over="ignore"):
            log_form = lib_sign * np.exp(lib_log) - sign * np.exp(log_abs)
        out[kind] = max(_units(lib - sign * np.exp(log_abs), scale), _units(log_form, scale))
    return out


def distance_agreement(x, y) -> float:
    """``squared_distances`` on both branches against explicit differences."""
    exact = ref.pairwise_squared_distances(x, y)
    centre = y.mean(axis=0)
    scale = (np.sum((x - centre) ** 2, axis=1)[:, None] + np.sum((y - centre) ** 2, axis=1)[None, :])
    direct = np.asarray(ik.squared_distances(jnp.asarray(x), jnp.asarray(y)))
    matmul = np.asarray(ik.squared_distances(jnp.asarray(x), jnp.asarray(y), direct_max=0))
    return max(_units(direct - exact, scale), _units(matmul - exact, scale))


def estimator_agreement(x, y) -> dict:
    """``mmd``, ``mmd2_from_features`` (V and U) and ``median_bandwidth`` against the reference (``x``, ``y``: n != m)."""
    out = {}
    for estimator in ("biased", "unbiased"):
        total = ref.log_mmd2(x, y, "linear", estimator=estimator)
        value = total.sign * np.exp(total.log_abs)
        lib = float(ik.mmd2_from_features(jnp.asarray(x), jnp.asarray(y), estimator=estimator))
        out[f"mmd2_from_features ({estimator})"] = _units(lib - value, np.exp(total.log_terms))
    rbf = ref.log_mmd2(x, y, "rbf", bandwidth=1.0)
    root = math.sqrt(max(float(rbf.sign * np.exp(rbf.log_abs)), 0.0))
    lib_root = float(ik.mmd(jnp.asarray(x), jnp.asarray(y), ik.rbf_kernel(bandwidth=1.0)))
    # d sqrt(v) = dv / (2 sqrt v): the square root's budget from MMD^2's absolute round-off sum|terms|
    out["mmd"] = _units(lib_root**2 - root**2, np.exp(rbf.log_terms))
    out["median_bandwidth"] = _units(ik.median_bandwidth(jnp.asarray(x), jnp.asarray(y)) - ref.median_bandwidth(x, y),
                                     ref.median_bandwidth(x, y))
    return out


@dataclasses.dataclass(frozen=True)
class PermutationFigures:
    statistic_agreement: float      # observed statistic vs the reference, both estimators (round-off units)
    p_value_agreement: float        # |p-value - (1 + #{T_b >= T_obs}) / (B + 1)| on the returned statistics (<= 4 eps)
    size: float                     # rejection rate at ALPHA under the null
    size_interval: tuple            # two-sided Clopper-Pearson at 1 - level
    expected_size: float            # floor(ALPHA (B + 1)) / (B + 1)
    power: float
    power_interval: tuple           # (lower, upper) one-sided limits at 1 - level each
    tests: int

    @property
    def ok(self) -> bool:
        return (self.statistic_agreement <= 1.0 and self.p_value_agreement <= 4 * eps(np.float64)
                and self.size_interval[0] <= self.expected_size <= self.size_interval[1]
                and self.power_interval[1] >= MIN_POWER)


def _clopper_pearson(k: int, n: int, level: float) -> tuple[float, float]:
    """The two-sided Clopper-Pearson interval at confidence ``1 - level`` (each limit one-sided at ``level / 2``)."""
    a = level / 2
    return (0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1)),
            1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k)))


@functools.partial(jax.jit, static_argnames=("estimator",))
def _batched_tests(x, y, keys, estimator="biased"):
    kernel = ik.rbf_kernel(bandwidth=1.0)
    run = lambda a, b, k: ik.mmd_permutation_test(a, b, kernel, key=k, num_permutations=PERMUTATIONS,  # noqa: E731
                                                  estimator=estimator)
    return jax.vmap(run)(x, y, keys)


def permutation_test(key, tests: int, level: float) -> PermutationFigures:
    """``mmd_permutation_test`` with an RBF kernel (bandwidth 1) on ``tests`` null and ``tests`` shifted pairs
    (vmapped over the tests); the size and the power each judged at ``level``."""
    data_key, test_key = jax.random.split(key)
    # n = SAMPLE, m = SAMPLE + 1: the coefficients of both samples are exercised
    z = draw_normals(data_key, 2 * tests, (2 * SAMPLE + 1) * 2, 1)[0].reshape(2, tests, 2 * SAMPLE + 1, 2)
    x = z[:, :, :SAMPLE]
    y = z[:, :, SAMPLE:] + 3.0 * np.arange(2)[:, None, None, None]   # null, then a shift of 3
    keys = jax.random.split(test_key, 2 * tests)
    res = _batched_tests(jnp.asarray(x.reshape(2 * tests, SAMPLE, 2)), jnp.asarray(y.reshape(2 * tests, SAMPLE + 1, 2)),
                         keys)
    stat, p_value, perm = (np.asarray(a) for a in res)
    p_def = (1 + np.sum(perm >= stat[:, None], axis=1)) / (PERMUTATIONS + 1)
    p_agree = float(np.max(np.abs(p_value - p_def)))
    rejections = (p_value <= ALPHA).reshape(2, tests).sum(axis=1)
    xs, ys = x.reshape(2 * tests, SAMPLE, 2), y.reshape(2 * tests, SAMPLE + 1, 2)
    unbiased = np.array([float(ik.mmd_permutation_test(jnp.asarray(xs[i]), jnp.asarray(ys[i]), ik.rbf_kernel(bandwidth=1.0),
                                                       key=keys[i], num_permutations=PERMUTATIONS,
                                                       estimator="unbiased").statistic) for i in range(4)])
    agree = 0.0
    for estimator, values in (("biased", stat[:4]), ("unbiased", unbiased)):
        total = ref.log_mmd2(xs[:4], ys[:4], "rbf", estimator=estimator, bandwidth=np.ones(4))
        agree = max(agree, _units(values - total.sign * np.exp(total.log_abs), np.exp(total.log_terms)))
    expected = math.floor(ALPHA * (PERMUTATIONS + 1)) / (PERMUTATIONS + 1)
    return PermutationFigures(agree, p_agree, rejections[0] / tests, _clopper_pearson(int(rejections[0]), tests, level),
                              expected, rejections[1] / tests, _clopper_pearson(int(rejections[1]), tests, 2 * level),
                              tests)
