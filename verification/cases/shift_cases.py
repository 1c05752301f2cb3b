"""Batches of shifted samples and the reference side of Theorems 4.1 and 4.2, shared by thm-4.1, thm-4.2, conj-4.1.

``ΔW = W̄(𝒬) - W̄(𝒟)`` with ``W̄(P) = 2 eta E_P[W^V x ⊗ phi(W^K x)]`` on empirical measures,
and the right-hand side of Theorem 4.1, ``2 eta ||W^V||_op MMD_k(𝒟, 𝒬)`` with
``k(x, x') = (x . x') exp((W^K x) . (W^K x'))`` (docs/statements.md#thm-4-1, Theorem 4.1).

Contents:

* :class:`ShiftBatch`: float64 arrays of many cases of one shape (leading batch axis), drawn by
  :func:`draw_shift_batches` from an explicit ``jax.random`` key (one compiled sampler per shape),
  with the attained configuration of every case (``W^V = s U``, U an isometry on the span of the
  tokens, projected when ``d_v < d``);
* :class:`ShiftCase` and :func:`shift_cases`: the same cases built from Hypothesis-drawn parameters
  (edge cases and shrinking), as batches of one;
* :func:`reference_weight_shift`: ``||ΔW||^2``, ``MMD_k^2`` (biased and unbiased) and ``||W^V||_op``
  from :mod:`verification.oracles.reference`, with their conditions (:class:`ReferenceShift`);
* :func:`library_shift`: the library's side of Theorems 4.1 and 4.2 for a batch (one ``jax.vmap``-ed,
  jitted program per shape, shared by both checks), run in fixed-size chunks by :func:`map_batches`;
* :func:`agreement`: the library-reference disagreement of a double sum in units of its round-off budget.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

import iclkd_jax as ik
from verification.cases.strategies import standard_normal_pool
from verification.core.keys import fast_key
from verification.core.tolerances import eps, require_finite
from verification.oracles import reference as ref

#: (d, d_k, d_v, n, m): a small pool (one compilation per shape); d_v > d and d_v < d; n != m.
SHAPES = ((2, 2, 3, 2, 3), (4, 2, 2, 4, 4), (6, 3, 4, 5, 8))
#: the round-off budget of one double sum of exponentials: each of the <= 169 terms carries a relative error
#: of a few eps (pairwise summation: log2(169) < 8) times (1 + |logit|) from the logit's own error
OPERATIONS = 64.0


@dataclasses.dataclass(frozen=True)
class ShiftBatch:
    """Cases of one shape: ``wk (B, d_k, d)``, ``wv (B, d_v, d)``, ``target (B, m, d)`` (𝒟), ``prompt (B, n, d)``
    (𝒬), ``log_eta (B,)``; float64 NumPy."""

    wk: np.ndarray
    wv: np.ndarray
    target: np.ndarray
    prompt: np.ndarray
    log_eta: np.ndarray

    @property
    def size(self) -> int:
        return int(self.log_eta.shape[0])

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.wk, self.wv, self.target, self.prompt, self.log_eta

    def case(self, i: int) -> dict:
        """The exact float64 inputs of case ``i`` as ``{name: nested lists or float}`` (a ``worst_case``)."""
        return {"wk": self.wk[i].tolist(), "wv": self.wv[i].tolist(), "target": self.target[i].tolist(),
                "prompt": self.prompt[i].tolist(), "log_eta": float(self.log_eta[i])}

    @staticmethod
    def concatenate(batches) -> ShiftBatch:
        return ShiftBatch(*(np.concatenate(parts) for parts in zip(*(b.arrays() for b in batches), strict=False)))


@functools.partial(jax.jit, static_argnames=("size", "normals", "uniforms"))
def _raw_draw(key, size, normals, uniforms):
    """``(size, normals)`` standard normals and ``(size, uniforms)`` U(0, 1) from one key: two RNG calls, one tiny
    compiled program per shape (the arrays are cut and transformed in NumPy)."""
    k_normal, k_uniform = jax.random.split(key)
    return (jax.random.normal(k_normal, (size, normals), jnp.float64),
            jax.random.uniform(k_uniform, (size, uniforms), jnp.float64))


#: the largest logit ||W^K x||^2 a drawn case may have: W^K is scaled down where a draw exceeds it. mmd2 returns
#: MMD^2 itself (not its log), which overflows float64 once the largest logit passes ~709
MAX_LOGIT = 500.0


def cap_logits(wk, *samples):
    """``wk (B, d_k, d)`` scaled per case so that ``max ||W^K x||^2 <= MAX_LOGIT`` over the rows of ``samples``."""
    tokens = np.concatenate(samples, axis=-2)
    largest = np.max(np.sum(np.einsum("bkd,bid->bik", wk, tokens) ** 2, axis=-1), axis=-1)
    return wk * np.sqrt(np.minimum(1.0, MAX_LOGIT / np.maximum(largest, 1e-300)))[:, None, None]


#: normals and uniforms drawn per case: fixed, so one sampler is compiled per batch size for every shape
POOL_NORMALS, POOL_UNIFORMS = 256, 4


def draw_normals(key, size: int, normals: int, uniforms: int) -> tuple[np.ndarray, np.ndarray]:
    """``(size, normals)`` standard normals and ``(size, uniforms)`` U(0, 1) (cut from the fixed-width pool)."""
    if normals > POOL_NORMALS or uniforms > POOL_UNIFORMS:
        raise ValueError(f"at most {POOL_NORMALS} normals and {POOL_UNIFORMS} uniforms per case, got {normals}, "
                         f"{uniforms}")
    normal, uniform = _raw_draw(fast_key(key), int(size), POOL_NORMALS, POOL_UNIFORMS)
    return np.asarray(normal, np.float64)[:, :normals], np.asarray(uniform, np.float64)[:, :uniforms]


def draw_shift_batches(key, shape, size: int, *, max_scale: float = 3.0) -> tuple[ShiftBatch, ShiftBatch]:
    """``size`` random cases of ``shape`` and their attained counterparts (same W^K, samples projected, W^V = s U).

    ``W^K`` entries ``~ N(0, scale^2/d)`` with ``scale ~ U(0.1, max_scale)`` (logits ``||W^K x||^2`` up to a few
    hundred, capped at :data:`MAX_LOGIT`), ``W^V ~ N(0, 1/d)``, 𝒟 and 𝒬 independent standard normal samples,
    𝒬 translated by ``U(0, 3)`` along a random direction, ``log eta ~ U(-5, 5)``.
    """
    d, dk, dv, n, m = shape
    sizes = [dk * d, dv * d, m * d, d, n * d, max(dv, d) * min(dv, d)]
    normal, uniform = draw_normals(key, size, sum(sizes), 3)
    parts = np.split(normal, np.cumsum(sizes)[:-1], axis=1)
    scale = (0.1 + (max_scale - 0.1) * uniform[:, 0])[:, None, None]
    wk = parts[0].reshape(size, dk, d) * scale / math.sqrt(d)
    wv = parts[1].reshape(size, dv, d) / math.sqrt(d)
    target = parts[2].reshape(size, m, d)
    direction = parts[3] / np.linalg.norm(parts[3], axis=1, keepdims=True)
    prompt = parts[4].reshape(size, n, d) + 3.0 * uniform[:, 1, None, None] * direction[:, None, :]
    log_eta = -5.0 + 10.0 * uniform[:, 2]
    wk = cap_logits(wk, target, prompt)
    q, _ = np.linalg.qr(parts[5].reshape(size, max(dv, d), min(dv, d)))
    u = q if dv >= d else np.swapaxes(q, -1, -2)                         # (size, dv, d), isometric
    tight_wv = (0.5 + np.abs(log_eta) / 5.0)[:, None, None] * u
    project = np.swapaxes(u, -1, -2) @ u if dv < d else np.broadcast_to(np.eye(d), (size, d, d))
    return (ShiftBatch(wk, wv, target, prompt, log_eta),
            ShiftBatch(wk, tight_wv, target @ project, prompt @ project, log_eta))


@dataclasses.dataclass(frozen=True)
class ShiftCase:
    """One case from Hypothesis-drawn parameters (all arrays from ``standard_normal_pool(seed)``).

    ``scale`` sets the logits ``||W^K x||^2 ~ scale^2 d_k``; ``offset`` translates 𝒬.
    """

    seed: int
    shape: tuple[int, int, int, int, int]
    scale: float
    log_eta: float
    offset: float

    def build(self) -> tuple[ShiftBatch, ShiftBatch]:
        """The case and its attained counterpart, as batches of one."""
        d, dk, dv, n, m = self.shape
        sizes = [dk * d, dv * d, m * d, n * d, d, max(dv, d) * min(dv, d)]
        parts = np.split(standard_normal_pool(self.seed, sum(sizes)), np.cumsum(sizes)[:-1])
        wk = parts[0].reshape(dk, d) * self.scale / math.sqrt(d)
        wv = parts[1].reshape(dv, d) / math.sqrt(d)
        target = parts[2].reshape(m, d)
        direction = parts[4] / np.linalg.norm(parts[4])
        prompt = parts[3].reshape(n, d) + self.offset * direction
        q, _ = np.linalg.qr(parts[5].reshape(max(dv, d), min(dv, d)))
        u = q if dv >= d else q.T
        project = u.T @ u if dv < d else np.eye(d)
        tight_wv = (0.5 + abs(self.log_eta) / 5.0) * u
        wk = cap_logits(wk[None], target[None], prompt[None])[0]
        one = lambda *a: ShiftBatch(*(np.asarray(x, np.float64)[None] for x in a))  # noqa: E731
        return (one(wk, wv, target, prompt, self.log_eta),
                one(wk, tight_wv, target @ project, prompt @ project, self.log_eta))

    def describe(self) -> dict:
        return dataclasses.asdict(self)


def shift_cases(max_scale: float = 3.0, shapes=SHAPES) -> st.SearchStrategy[ShiftCase]:
    return st.builds(ShiftCase, seed=st.integers(0, 2**31 - 1), shape=st.sampled_from(shapes),
                     scale=st.floats(0.1, max_scale), log_eta=st.floats(-5.0, 5.0), offset=st.floats(0.0, 3.0))


@dataclasses.dataclass(frozen=True)
class ReferenceShift:
    """The reference side of Theorem 4.1 per case (arrays over the batch).

    Attributes:
      dw: ``||ΔW||_HS^2`` (:class:`verification.oracles.reference.LogSum`).
      mmd2: biased ``MMD_k^2``; ``mmd2_unbiased``: the U-statistic (both LogSums).
      wv_op: ``||W^V||_op`` (SVD).
      max_logit: ``max_i ||W^K x_i||^2`` over both samples (bounds every ``|k_i . k_j|``).
      log_mx, log_mphi: ``log max ||x||``, ``log max exp(||W^K x||^2 / 2)`` over both samples.
    """

    dw: ref.LogSum
    mmd2: ref.LogSum
    mmd2_unbiased: ref.LogSum
    wv_op: np.ndarray
    max_logit: np.ndarray
    log_mx: np.ndarray
    log_mphi: np.ndarray

    @property
    def round_off(self) -> np.ndarray:
        """The relative round-off unit of one double sum here: ``OPERATIONS eps (1 + max logit)``."""
        return OPERATIONS * eps(np.float64) * (1.0 + self.max_logit)

    @property
    def log_bound(self) -> np.ndarray:
        """``log(2 eta ||W^V||_op MMD_k)`` is this plus ``log eta`` (``-inf`` for MMD^2 <= 0)."""
        with np.errstate(divide="ignore"):
            return math.log(2.0) + np.log(self.wv_op) + np.where(self.mmd2.sign > 0, 0.5 * self.mmd2.log_abs, -np.inf)


def reference_weight_shift(batch: ShiftBatch) -> ReferenceShift:
    tokens = np.concatenate([batch.target, batch.prompt], axis=-2)
    keys = np.einsum("bkd,bid->bik", batch.wk, tokens)
    key_norm2 = np.sum(keys * keys, axis=-1)
    return ReferenceShift(
        dw=ref.log_hs_norm2(*ref.weight_difference(batch.wk, batch.wv, batch.target, batch.prompt, batch.log_eta)),
        mmd2=ref.log_mmd2(batch.target, batch.prompt, "product", wk=batch.wk),
        mmd2_unbiased=ref.log_mmd2(batch.target, batch.prompt, "product", wk=batch.wk, estimator="unbiased"),
        wv_op=ref.operator_norm(batch.wv), max_logit=np.max(key_norm2, axis=-1),
        log_mx=0.5 * np.log(np.max(np.sum(tokens * tokens, axis=-1), axis=-1)),
        log_mphi=0.5 * np.max(key_norm2, axis=-1))


#: the largest relative round-off (``64 eps (1 + max logit)`` times the condition) at which a library double sum
#: still resolves its value: below it the first-order ratio tolerances are rigorous (:func:`resolved_intervals`)
RESOLUTION = 0.5


@dataclasses.dataclass(frozen=True)
class Intervals:
    """What the library's ``||ΔW||^2`` and ``MMD_k^2`` certify about the true values, per case (logs of norms).

    ``resolved``: both relative round-offs ``u cond`` are at most :data:`RESOLUTION`; ``log_dw_lo``, ``log_dw_hi``:
    ``log sqrt(max(lib - e, 0))`` and ``log sqrt(lib + e)`` for ``||ΔW||``; ``log_mmd_hi`` the same upper end for
    ``MMD_k``; ``e = u sum|terms|`` the absolute budget of each (``-inf`` for an empty interval end).
    """

    resolved: np.ndarray
    log_dw_lo: np.ndarray
    log_dw_hi: np.ndarray
    log_mmd_hi: np.ndarray


def resolved_intervals(library_log_dw2, library_mmd2, refs: ReferenceShift) -> Intervals:
    """The library's ``||ΔW||^2`` (as a log) and ``MMD_k^2`` as intervals that contain the true values.

    Error analysis. Each is a double sum ``sum_ij c_i c_j g_ij exp(k_i . k_j)`` whose terms carry a relative error
    of a few eps times ``1 + |logit|``; the agreement test holds the library to
    ``|lib - ref| <= u sum|terms|``, ``u = 64 eps (1 + max logit)`` (:attr:`ReferenceShift.round_off`), a budget
    that also covers the reference's own few eps. So ``|lib - true| <= e = u sum|terms| = u cond |true|``: a
    relative error ``r = u cond``. For ``r <= 1/2`` (``resolved``) a ratio ``sqrt(A/M)`` of two such sums is off by
    a factor in ``[sqrt((1 - r_A)/(1 + r_M)), sqrt((1 + r_A)/(1 - r_M))] ⊂ [1 - r_A - r_M/2, 1 + r_A + r_M]``
    (``1/(1 - r) <= 1 + 2r`` and ``sqrt(1 + x) <= 1 + x/2`` there), which the checks' ratio tolerance
    ``u (cond_A + cond_M + 1)`` covers. Past ``r = 1/2`` the relative bound says nothing (at ``r >= 1`` even the
    sign of the library's ``MMD^2`` is round-off, and a bound of exactly 0 would make a true inequality look
    failed): there the checks judge the absolute intervals ``[lib - e, lib + e]``, which hold at any conditioning,
    and compare the smallest left-hand side they allow with the largest right-hand side.
    """
    u = refs.round_off
    log_u = np.log(u)
    resolved = (u * refs.dw.condition <= RESOLUTION) & (u * refs.mmd2.condition <= RESOLUTION)
    library_log_dw2 = np.asarray(library_log_dw2, np.float64)
    log_e_dw = log_u + refs.dw.log_terms
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gap = np.where(log_e_dw < library_log_dw2, -np.expm1(log_e_dw - library_log_dw2), 0.0)
        log_dw2_lo = np.where(gap > 0, library_log_dw2 + np.log(gap), -np.inf)
        log_dw2_hi = np.logaddexp(library_log_dw2, log_e_dw)
        # MMD^2 + e, divided by sum|terms| (finite, overflow-free) before the log; negative only when the library
        # is off by more than its budget (the agreement test's violation): the bound's upper end is then 0
        finite_terms = np.isfinite(refs.mmd2.log_terms)
        normalised = np.asarray(library_mmd2, np.float64) * np.exp(-np.where(finite_terms, refs.mmd2.log_terms, 0.0))
        log_mmd2_hi = np.where(finite_terms, refs.mmd2.log_terms + np.log(np.maximum(normalised + u, 0.0)),
                               np.log(np.maximum(np.asarray(library_mmd2, np.float64), 0.0)))
    return Intervals(resolved, 0.5 * log_dw2_lo, 0.5 * log_dw2_hi, 0.5 * log_mmd2_hi)


def agreement(library_value, reference: ref.LogSum, round_off) -> np.ndarray:
    """``|library - reference| / (round_off * sum|terms|)`` per case: <= 1 is agreement within round-off.

    ``library_value`` is the plain value (``sign * exp(log)`` scale, may be negative for a U-statistic); the
    comparison is made after dividing both by ``sum|terms|`` (overflow-free).
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        lib = np.asarray(library_value, np.float64) * np.exp(-reference.log_terms)
        refv = reference.sign * np.exp(reference.log_abs - reference.log_terms)
        out = np.abs(lib - refv) / round_off
    # every term exactly 0 (e.g. W̄ of values W^V x = 0): the library must return exactly 0
    zero = reference.log_terms == -np.inf
    out = np.where(zero, np.where(np.asarray(library_value) == 0, 0.0, np.inf), out)
    require_finite({"library double sum against the reference": out}, allow_inf=True)
    return out


def log_agreement(library_log, reference: ref.LogSum, round_off, sign=None) -> np.ndarray:
    """:func:`agreement` for a library value given as ``log`` (``-inf`` for 0), e.g. ``hs_norm().log_value``.

    ``sign``: the value's sign where it can be negative or 0 (``log_mmd2``'s ``sign * exp(log_abs)``); None: positive.
    """
    library_log = np.asarray(library_log, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        lib = np.where(np.isfinite(library_log), np.exp(library_log - reference.log_terms), 0.0)
        if sign is not None:
            lib = np.asarray(sign, np.float64) * lib
        lib = np.where(np.isnan(library_log), np.nan, lib)
        refv = reference.sign * np.exp(reference.log_abs - reference.log_terms)
        out = np.abs(lib - refv) / round_off
    zero = reference.log_terms == -np.inf
    out = np.where(zero, np.where(library_log == -np.inf, 0.0, np.inf), out)
    require_finite({"library log double sum against the reference": out}, allow_inf=True)
    return out


def map_batches(fn, arrays, chunk: int) -> dict:
    """``fn`` (jitted, vmapped over axis 0 of every array) over ``arrays`` in chunks of ``chunk`` rows.

    The last chunk is padded with copies of the first row (dropped from the output), so every chunk of a shape
    runs the same compiled program. Returns ``{name: np.ndarray}`` of ``fn``'s dict output.
    """
    size = arrays[0].shape[0]
    outs = []
    for start in range(0, size, chunk):
        part = [a[start:start + chunk] for a in arrays]
        pad = chunk - part[0].shape[0]
        if pad:
            part = [np.concatenate([p, np.repeat(p[:1], pad, axis=0)]) for p in part]
        res = fn(*(jnp.asarray(p) for p in part))
        outs.append({k: np.asarray(v)[: chunk - pad] for k, v in res.items()})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


@jax.jit
def library_shift(wk, wv, target, prompt, log_eta, queries, reference):
    """The library's quantities of Theorems 4.1 and 4.2 for a batch of cases (vmapped over axis 0).

    Per case: ``log ||ΔW||_HS^2`` (``distilled_weight_difference`` + ``hs_norm``), ``MMD_k^2`` (``mmd2`` dense biased)
    and its ``log_mmd2`` (``log_mmd2``, ``log_mmd2_sign``),
    the unbiased ``MMD_k^2``, the prediction shifts ``f_S(x; W̄(𝒬)) - f_S(x; W̄(𝒟))`` at ``queries (Q, d)``, the KD
    risks ``L(W̄(𝒬))``, ``L(W̄(𝒟))`` on ``reference (R, d)`` and ``log ||W̄(𝒬)||^2``, ``log ||W̄(𝒟)||^2``.
    """
    def one(wk, wv, target, prompt, log_eta, queries, reference):
        weights = ik.AttentionWeights(wk, wk, wv)
        hs = ik.hs_norm(ik.distilled_weight_difference(weights, target, prompt, log_eta=log_eta))
        kernel = ik.product_kernel(wk)
        mmd2 = ik.mmd2(target, prompt, kernel)
        log_mmd2 = ik.log_mmd2(target, prompt, kernel)
        w_q = ik.distilled_weights(weights, prompt, log_eta=log_eta)
        w_d = ik.distilled_weights(weights, target, log_eta=log_eta)
        return {"log_dw2": hs.log_value, "mmd2": mmd2, "log_mmd2": log_mmd2.log_abs, "log_mmd2_sign": log_mmd2.sign,
                "mmd2_unbiased": ik.mmd2(target, prompt, kernel, estimator="unbiased"),
                "prediction_shift": ik.student(w_q, weights, queries) - ik.student(w_d, weights, queries),
                "risk_q": ik.kd_risk(w_q, weights, reference), "risk_d": ik.kd_risk(w_d, weights, reference),
                "log_hs_q": ik.hs_norm(w_q).log_value, "log_hs_d": ik.hs_norm(w_d).log_value}

    return jax.vmap(one)(wk, wv, target, prompt, log_eta, queries, reference)


def library_operator_norms(matrices) -> np.ndarray:
    """``ik.operator_norm`` (host-side, ~0.3 ms a call) of every matrix of a batch."""
    return np.array([ik.operator_norm(a) for a in np.asarray(matrices)])


#: cases per batch whose ``||W^V||_op`` is also computed by the library and compared with the reference (the
#: bounds use the reference's value on every case: the library function is host-side and ~0.3 ms a call)
OPERATOR_NORM_SAMPLE = 64


def operator_norm_agreement(matrices) -> np.ndarray:
    """``|ik.operator_norm - SVD| / (64 eps ||A||)`` on the first :data:`OPERATOR_NORM_SAMPLE` matrices (SVD is
    backward stable: a few eps relative)."""
    sample = np.asarray(matrices)[:OPERATOR_NORM_SAMPLE]
    exact = ref.operator_norm(sample)
    return np.abs(library_operator_norms(sample) - exact) / (OPERATIONS * eps(np.float64) * exact)


def reference_prediction_scale(wk, wv, tokens, log_eta, queries) -> np.ndarray:
    """``(2 eta / N) sum_i ||W^V x_i|| exp((W^K x_i) . (W^K x))`` per query ``(B, Q)``: the size of the kernel sum
    behind ``f_S(x; W̄(P))`` (its absolute round-off is a few eps (1 + |logit|) times this)."""
    return np.exp(log_reference_prediction_scale(wk, wv, tokens, log_eta, queries))


def log_reference_prediction_scale(wk, wv, tokens, log_eta, queries) -> np.ndarray:
    """The log of :func:`reference_prediction_scale` (``-inf`` where every value is 0), never overflowing."""
    keys = np.einsum("bkd,bid->bik", wk, tokens)
    qkeys = np.einsum("bkd,bqd->bqk", wk, queries)
    with np.errstate(divide="ignore"):
        logits = np.einsum("bqk,bik->bqi", qkeys, keys) + np.log(np.linalg.norm(
            np.einsum("bad,bid->bia", wv, tokens), axis=-1))[:, None, :]
    top = logits.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)  # every value 0: the sum is 0
    with np.errstate(divide="ignore"):
        log_size = top[..., 0] + np.log(np.exp(logits - top).sum(axis=-1))
    return log_size + math.log(2.0) + np.asarray(log_eta)[:, None] - math.log(tokens.shape[-2])


def draw_queries(key, batch: ShiftBatch) -> np.ndarray:
    """As many standard normal query tokens per case as target rows (``(B, m, d)``: the shared program's shapes)."""
    size, m, d = batch.target.shape
    return draw_normals(key, size, m * d, 1)[0].reshape(size, m, d)
