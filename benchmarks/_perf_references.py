"""The references of ``iclkd bench perf``: plain NumPy and scikit-learn code, in the dtype ours runs in.

Every function keeps the dtype of its inputs (float32 in, float32 arithmetic; NumPy >= 2 keeps
Python scalars weak), so a ratio "ours / NumPy" compares the same arithmetic on both sides.
Kernel sums run over row chunks (memory bounded, as a careful NumPy user would write them).
scikit-learn's ``rbf_kernel`` is called with arrays of that dtype; what it does inside (it
computes float32 distances through float64 chunks) is its own choice, reported as is.
"""

from __future__ import annotations

import numpy as np


def sqdist(a, b):
    """Pairwise squared distances by the expansion, both sets centred on the mean of ``b``."""
    centre = b.mean(axis=0)
    a, b = a - centre, b - centre
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * (a @ b.T), 0)


def rbf(bandwidth):
    def gram(a, b):
        return np.exp(sqdist(a, b) * a.dtype.type(-1.0 / (2.0 * bandwidth**2)))
    return gram


def laplace(bandwidth):
    def gram(a, b, diagonal_offset=None):
        d2 = sqdist(a, b)
        if diagonal_offset is not None:  # a point against itself: distance exactly 0 (the expansion leaves
            rows = np.arange(len(a))     # ~eps |a|^2 there, which sqrt would amplify to ~sqrt(eps) |a|)
            d2[rows, diagonal_offset + rows] = 0
        return np.exp(np.sqrt(d2) * a.dtype.type(-1.0 / bandwidth))
    gram.zero_diagonal = True
    return gram


def linear(a, b):
    return a @ b.T


def exp(a, b):
    return np.exp(a @ b.T)


def product(wk):
    def gram(a, b):
        w = wk.astype(a.dtype)
        return (a @ b.T) * np.exp((a @ w.T) @ (b @ w.T).T)
    return gram


def kernel_sum(gram_fn, a, b, exclude_diagonal, chunk=2048):
    """``sum_ij k(a_i, b_j)`` over row chunks of ``chunk`` rows, in the inputs' dtype."""
    total = a.dtype.type(0)
    for start in range(0, a.shape[0], chunk):
        if getattr(gram_fn, "zero_diagonal", False) and a is b:
            block = gram_fn(a[start:start + chunk], b, diagonal_offset=start)
        else:
            block = gram_fn(a[start:start + chunk], b)
        if exclude_diagonal:
            rows = np.arange(block.shape[0])
            block[rows, start + rows] = 0
        total += block.sum()
    return total


def mmd2(gram_fn, x, y, unbiased):
    n, m = len(x), len(y)
    sxx = kernel_sum(gram_fn, x, x, unbiased)
    syy = kernel_sum(gram_fn, y, y, unbiased)
    sxy = kernel_sum(gram_fn, x, y, False)
    if unbiased:
        return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)
    return sxx / n**2 + syy / m**2 - 2 * sxy / (n * m)


def mmd2_with_scale(gram_fn, x, y, unbiased):
    """``(MMD^2, scale)``, ``scale = sum|terms|`` with each sum's weight: the absolute round-off of any summation
    order is a multiple of ``eps * scale`` (the relative error of a cancelling difference is not bounded)."""
    n, m = len(x), len(y)
    value = mmd2(gram_fn, x, y, unbiased)
    absolute = lambda a, b, **kw: np.abs(gram_fn(a, b, **kw))  # noqa: E731
    absolute.zero_diagonal = getattr(gram_fn, "zero_diagonal", False)
    sums = (kernel_sum(absolute, x, x, unbiased), kernel_sum(absolute, y, y, unbiased), kernel_sum(absolute, x, y, False))
    weights = (1 / (n * (n - 1)), 1 / (m * (m - 1))) if unbiased else (1 / n**2, 1 / m**2)
    return value, sums[0] * weights[0] + sums[1] * weights[1] + 2 * sums[2] / (n * m)


def sklearn_mmd2(x, y, bandwidth, unbiased):
    """MMD^2 from scikit-learn's three RBF Gram matrices (n x n memory: the way it is usually written)."""
    from sklearn.metrics.pairwise import rbf_kernel
    gamma = 1.0 / (2 * bandwidth**2)
    n, m = len(x), len(y)
    kxx, kyy, kxy = rbf_kernel(x, x, gamma=gamma), rbf_kernel(y, y, gamma=gamma), rbf_kernel(x, y, gamma=gamma)
    if unbiased:
        return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                - 2 * kxy.sum() / (n * m))
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


def kd_decomposition(wq, wk, wv, demos, queries):
    """Softmax attention's output, log partition function and entropy (Theorem 3.1), max-shifted."""
    q = queries @ wq.T
    logits = q @ (demos @ wk.T).T
    top = logits.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    weights = np.exp(logits - log_z[:, None])
    out = weights @ (demos @ wv.T)
    entropy = -(weights * (logits - log_z[:, None])).sum(axis=1)
    return out, log_z, entropy


def permutation_test(gram, n, labels):
    m = gram.shape[0] - n
    coeffs = labels / n - (1 - labels) / m
    stats = ((coeffs @ gram) * coeffs).sum(axis=1)
    return stats[0], (1 + np.sum(stats[1:] >= stats[0])) / len(stats)


def max_quadratic_on_ball(a, b, radius):
    lam, vec = np.linalg.eigh(a)
    beta = vec.T @ b
    lo, hi = max(lam[-1], 0.0), max(lam[-1], 0.0) + np.linalg.norm(b) / radius + 1.0
    for _ in range(100):  # bisection on the secular equation ||(mu - lam)^-1 beta|| = R
        mu = 0.5 * (lo + hi)
        if np.linalg.norm(beta / (mu - lam)) > radius:
            lo = mu
        else:
            hi = mu
    w = vec @ (beta / (lam - hi))
    return w @ a @ w - 2 * b @ w
