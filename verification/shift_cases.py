"""Sample pairs of a shifted prompt and the weight shift of Theorem 4.1, shared by thm-4.1, thm-4.2 and conj-4.1.

``ΔW = W̄(𝒬) - W̄(𝒟)`` with ``W̄(P) = 2 eta E_P[W^V x ⊗ phi(W^K x)]`` on empirical measures,
and the right-hand side of Theorem 4.1, ``2 eta ||W^V||_op MMD_k(𝒟, 𝒬)`` with
``k(x, x') = (x . x') exp((W^K x) . (W^K x'))`` (THEOREMS.md, Theorem 4.1).

Contents: :class:`ShiftCase` (a Hypothesis-built case: two samples and the maps of one head,
plus the attained configuration with an isometric W^V), :func:`shift_cases`,
:func:`weight_shift` (the measurement :class:`WeightShift`, in log space), the operator norms
:func:`operator_norm` and :func:`smallest_singular_value`, and :func:`mmd_condition`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

import iclkd_jax as ik
from verification.strategies import standard_normal_pool
from verification.tolerances import relative_tolerance

#: (d, d_k, d_v, n, m): a small pool (one compilation per shape); d_v > d and d_v < d; n != m.
SHAPES = ((2, 2, 3, 2, 3), (4, 2, 2, 4, 4), (6, 3, 4, 5, 8))


def operator_norm(matrix) -> float:
    """``||A||_op``, the largest singular value (float64 NumPy SVD)."""
    return float(np.linalg.norm(np.asarray(matrix, np.float64), ord=2))


def smallest_singular_value(matrix) -> float:
    return float(np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)[-1])


def mmd_condition(wk, target, prompt) -> float:
    """The condition ``sum|t_ij| / |sum t_ij|`` of the biased MMD^2 double sum of the product kernel.

    ``t_ij = c_i c_j (x_i . x_j) exp(k_i . k_j - max)`` with ``c = [+1/n]*n + [-1/m]*m``: the same
    estimate as ``hs_norm``'s condition, in NumPy (a few points; no compilation).
    """
    n, m = prompt.shape[0], target.shape[0]
    tokens = np.concatenate([np.asarray(prompt, np.float64), np.asarray(target, np.float64)])
    keys = tokens @ np.asarray(wk, np.float64).T
    coef = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    logits = keys @ keys.T
    terms = np.outer(coef, coef) * (tokens @ tokens.T) * np.exp(logits - logits.max())
    total = abs(float(terms.sum()))
    return float(np.abs(terms).sum()) / total if total > 0 else math.inf


@dataclasses.dataclass(frozen=True)
class WeightShift:
    """Theorem 4.1 on one pair of samples, in log space.

    Attributes:
      ratio: ``||ΔW||_HS / (2 eta ||W^V||_op MMD_k)`` (0 when ΔW = 0; inf when MMD^2 <= 0 while ΔW != 0).
      tolerance: the relative round-off budget of the ratio (module docstring of thm-4.1).
      mmd_tilde: ``MMD_k / (M_x M_phi)`` with the samples' ``M_x, M_phi``: at most 2 since ``k~ <= 1``.
      log_dw, log_mmd, log_bound: ``log ||ΔW||``, ``log MMD_k``, ``log`` of the bound.
      mmd2: ``MMD_k^2`` as computed.
      cond_dw, cond_mmd: the conditions of the two double sums.
      max_logit: ``max |k_i . k_j|`` over both samples.
      log_mx, log_mphi: ``log max ||x||`` and ``log max exp(||W^K x||^2/2)`` over both samples.
    """

    ratio: float
    tolerance: float
    mmd_tilde: float
    log_dw: float
    log_mmd: float
    log_bound: float
    mmd2: float
    cond_dw: float
    cond_mmd: float
    max_logit: float
    log_mx: float
    log_mphi: float

    def score(self) -> float:
        """``max(ratio, MMD_k~ / 2) - 1`` in units of the tolerance (<= 1 holds)."""
        return (max(self.ratio, self.mmd_tilde / 2.0) - 1.0) / self.tolerance


def weight_shift(weights: ik.AttentionWeights, target, prompt, log_eta: float, *,
                 dw_log_eta: float | None = None, mmd2: Callable | None = None,
                 value_norm: Callable | None = None) -> WeightShift:
    """Theorem 4.1 on the empirical measures ``target`` (𝒟) and ``prompt`` (𝒬), in log space.

    ``dw_log_eta``, ``mmd2(target, prompt, wk)`` and ``value_norm(wv)`` replace the step size of
    ΔW, the MMD^2 and ``||W^V||_op`` (a check's mutants act there); the conditions the tolerance is
    derived from are never replaced.
    """
    wk, wv = weights.wk, weights.wv
    dw = ik.hs_norm(ik.distilled_weight_difference(
        weights, target, prompt, log_eta=log_eta if dw_log_eta is None else dw_log_eta))
    mmd2_value = float(ik.mmd2(target, prompt, ik.product_kernel(wk)) if mmd2 is None else mmd2(target, prompt, wk))
    m_v = operator_norm(wv) if value_norm is None else value_norm(wv)
    tokens = np.concatenate([np.asarray(target), np.asarray(prompt)])
    keys = tokens @ np.asarray(wk).T
    max_logit = float(np.max(np.abs(keys @ keys.T)))
    cond_dw, cond_mmd = float(dw.condition), mmd_condition(wk, target, prompt)
    tol = relative_tolerance(np.float64, condition=(cond_dw + cond_mmd + 1.0) * (1.0 + max_logit))
    log_dw = 0.5 * float(dw.log_value)                      # log ||ΔW||_HS  (-inf when ΔW = 0)
    log_mmd = 0.5 * math.log(mmd2_value) if mmd2_value > 0 else -math.inf
    log_bound = math.log(2.0) + log_eta + math.log(m_v) + log_mmd
    if log_dw == -math.inf:
        ratio = 0.0
    elif log_bound == -math.inf:
        ratio = math.inf                                   # MMD^2 <= 0 (unbiased) while ΔW != 0
    else:
        ratio = math.exp(log_dw - log_bound)
    log_mx = math.log(float(np.max(np.linalg.norm(tokens, axis=1))))
    log_mphi = 0.5 * float(np.max(np.sum(keys * keys, axis=1)))
    mmd_tilde = math.exp(log_mmd - log_mx - log_mphi) if log_mmd > -math.inf else 0.0
    return WeightShift(ratio=ratio, tolerance=tol, mmd_tilde=mmd_tilde, log_dw=log_dw, log_mmd=log_mmd,
                       log_bound=log_bound, mmd2=mmd2_value, cond_dw=cond_dw, cond_mmd=cond_mmd,
                       max_logit=max_logit, log_mx=log_mx, log_mphi=log_mphi)


def isometry(pool: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A ``(rows, cols)`` matrix with orthonormal rows (rows <= cols) or columns (rows >= cols)."""
    a = pool[: rows * cols].reshape(max(rows, cols), min(rows, cols))
    q, _ = np.linalg.qr(a)
    return q if rows >= cols else q.T


@dataclasses.dataclass(frozen=True)
class ShiftCase:
    """Two samples and the maps of one head, all from ``standard_normal_pool(seed)``.

    ``scale`` sets the logits ``||W^K x||^2 ~ scale^2 d_k``; ``offset`` translates 𝒬
    (independent draws of 𝒟 and 𝒬 in every case).
    """

    seed: int
    shape: tuple[int, int, int, int, int]
    scale: float
    log_eta: float
    offset: float

    def build(self):
        """``(general, tight, target, prompt, target_projected, prompt_projected)``.

        ``tight`` has ``W^V = s U`` with U an isometry on the span of the (projected, when d_v < d) tokens:
        the attained case of Theorem 4.1.
        """
        d, dk, dv, n, m = self.shape
        sizes = [dk * d, dv * d, m * d, n * d, d, max(dv, d) * max(dv, d)]
        parts = np.split(standard_normal_pool(self.seed, sum(sizes)), np.cumsum(sizes)[:-1])
        wk = parts[0].reshape(dk, d) * self.scale / math.sqrt(d)
        wv = parts[1].reshape(dv, d) / math.sqrt(d)
        target = parts[2].reshape(m, d)
        direction = parts[4] / np.linalg.norm(parts[4])
        prompt = parts[3].reshape(n, d) + self.offset * direction
        u = isometry(parts[5], dv, d)
        tight_wv = (0.5 + abs(self.log_eta) / 5.0) * u
        project = u.T @ u if dv < d else np.eye(d)
        as_jax = lambda a: jnp.asarray(a, jnp.float64)  # noqa: E731
        general = ik.AttentionWeights(as_jax(wk), as_jax(wk), as_jax(wv))
        tight = ik.AttentionWeights(as_jax(wk), as_jax(wk), as_jax(tight_wv))
        return general, tight, as_jax(target), as_jax(prompt), as_jax(target @ project), as_jax(prompt @ project)

    def describe(self) -> dict:
        return dataclasses.asdict(self)


def shift_cases(max_scale: float = 4.5, shapes=SHAPES) -> st.SearchStrategy[ShiftCase]:
    return st.builds(ShiftCase, seed=st.integers(0, 2**31 - 1), shape=st.sampled_from(shapes),
                     scale=st.floats(0.1, max_scale), log_eta=st.floats(-5.0, 5.0), offset=st.floats(0.0, 3.0))
