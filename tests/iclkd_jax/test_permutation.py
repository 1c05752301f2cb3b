"""mmd_permutation_test: the observed statistic is mmd2, each permuted statistic is mmd2 of a relabelled split
(checked against an explicit loop), p-values behave under H0 / H1, keys make it deterministic, no recompilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iclkd_jax import mmd2, mmd_permutation_test, product_kernel, rbf_kernel, trace_counts
from iclkd_jax.mmd import _random_splits

KERNELS = {"rbf": lambda: rbf_kernel(bandwidth=1.3),
           "product": lambda: product_kernel(0.4 * np.random.default_rng(3).normal(size=(2, 3)))}


def _samples(shift, n=14, m=11, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.normal(size=(m, 3)) + shift


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_statistics_equal_mmd2_of_each_relabelling(kernel, estimator, x64):
    k = KERNELS[kernel]()
    x, y = _samples(0.4)
    key = jax.random.key(7)
    result = mmd_permutation_test(x, y, k, key=key, num_permutations=12, estimator=estimator)
    np.testing.assert_allclose(result.statistic, mmd2(x, y, k, estimator=estimator), rtol=1e-12)
    # the relabellings are those of _random_splits(key): each must have exactly n ones, and each
    # permuted statistic must be mmd2 of that split, computed independently
    z = np.concatenate([x, y])
    splits = np.asarray(_random_splits(key, 12, len(z), len(x), jnp.float64)) > 0.5
    assert np.all(splits.sum(axis=1) == len(x))
    for b, labels in enumerate(splits):
        expected = mmd2(z[labels], z[~labels], k, estimator=estimator)
        np.testing.assert_allclose(result.permutation_statistics[b], expected, rtol=1e-10, atol=1e-14)
    p = (1 + np.sum(np.asarray(result.permutation_statistics) >= float(result.statistic))) / 13
    assert float(result.p_value) == pytest.approx(p)


def test_p_value_small_under_h1_and_not_under_h0(x64):
    k = rbf_kernel(bandwidth=1.0)
    x, y = _samples(1.5, n=30, m=30)
    assert float(mmd_permutation_test(x, y, k, key=jax.random.key(0), num_permutations=200).p_value) < 0.02
    x0, y0 = _samples(0.0, n=30, m=30, seed=1)
    assert float(mmd_permutation_test(x0, y0, k, key=jax.random.key(0), num_permutations=200).p_value) > 0.05


def test_deterministic_in_the_key_float32_and_no_recompilation():
    x, y = (np.asarray(a, np.float32) for a in _samples(0.3))
    k = rbf_kernel(bandwidth=np.float32(1.0))
    first = mmd_permutation_test(x, y, k, key=jax.random.key(1), num_permutations=20)
    assert first.statistic.dtype == jnp.float32 and first.permutation_statistics.shape == (20,)
    before = trace_counts().get("iclkd_jax.mmd._permutation_test", 0)
    again = mmd_permutation_test(x + 0.01, y, rbf_kernel(bandwidth=np.float32(2.0)), key=jax.random.key(2),
                                 num_permutations=20)
    assert trace_counts().get("iclkd_jax.mmd._permutation_test", 0) == before  # new data, bandwidth, key: no retrace
    same = mmd_permutation_test(x, y, k, key=jax.random.key(1), num_permutations=20)
    np.testing.assert_array_equal(first.permutation_statistics, same.permutation_statistics)
    assert not np.array_equal(first.permutation_statistics, again.permutation_statistics)


@pytest.mark.parametrize("bad, match", [({"key": 0}, "key"), ({"num_permutations": 0}, "num_permutations"),
                                        ({"estimator": "v"}, "estimator")])
def test_rejects_bad_arguments(bad, match):
    x, y = _samples(0.0)
    kwargs = {"key": jax.random.key(0), "num_permutations": 5} | bad
    with pytest.raises(ValueError, match=match):
        mmd_permutation_test(x, y, rbf_kernel(bandwidth=1.0), **kwargs)


@pytest.mark.parametrize("use_x64", [True, False], ids=["packed-uint64-key", "two-uint32-keys"])
def test_random_splits_are_uniform(use_x64):
    """Each of N positions is in the first sample with probability n/N, and pairs with n(n-1)/(N(N-1)).

    Both sampling paths: one packed uint64 sort key (x64 on) and two uint32 keys (x64 off)."""
    total, n, draws = 9, 4, 20000
    with jax.enable_x64(use_x64):
        splits = np.asarray(jax.jit(_random_splits, static_argnums=(1, 2, 3, 4))(
            jax.random.key(3), draws, total, n, jnp.float32))
    assert np.all(splits.sum(axis=1) == n)
    p = n / total
    # 5 standard errors of a binomial proportion over `draws` splits
    np.testing.assert_allclose(splits.mean(axis=0), p, atol=5 * np.sqrt(p * (1 - p) / draws))
    pair = n * (n - 1) / (total * (total - 1))
    joint = (splits.T @ splits / draws)[np.triu_indices(total, 1)]
    np.testing.assert_allclose(joint, pair, atol=5 * np.sqrt(pair * (1 - pair) / draws))
