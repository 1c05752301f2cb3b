"""The machinery of Theorem 3.2 shared by thm-3.2, conj-3.2 and the tightness benchmark (docs/statements.md#thm-3-2, Theorem 3.2).

``G_N = sup_{||W||_HS <= B} [L(W) - L_N(W)]`` computed **exactly** for an explicit Taylor
feature map of order :data:`ORDER`: ``L - L_N = dc - 2<W, dM> + <W^T W, dS>`` with
``S = E phi phi^T``, ``M = E t phi^T``, ``c = E||t||^2`` and ``d = population - empirical``;
over ``vec W`` (rows of W) the quadratic form is ``I_{d_v} ⊗ dS``, so one ``m x m``
eigendecomposition and the secular equation of :func:`iclkd_jax.max_quadratic_in_eigenbasis`
(eigenvalues tiled ``d_v`` times) give the exact maximum, hard case included.

Contents: the settings (bounded laws, N, B, weight norms), :func:`random_weights`,
:func:`constants` (T, C_p, C), :func:`theorem_bound`, :func:`population` (exact for the
two-point law, else a reference sample with a split-half error), :func:`sup_gaps` (vmapped
over draws, with random probes of the ball as a guard), and :func:`clopper_pearson_lower`.
Measurements are the small dataclasses :class:`Constants`, :class:`Population`, :class:`SupGaps`.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import iclkd_jax as ik
from iclkd_jax import distributions as dists
from verification.core.keys import fast_key
from verification.core.tolerances import eps
from verification.oracles import reference as ref

__all__ = ["fast_key"]  # re-exported: conj-3.2 and the tightness cells derive their keys with it

DELTA = 0.05
CONFIDENCE = 0.99
REFERENCE_CHUNKS = 8
PROBES = 32
OPERATIONS = 64.0

#: One padded problem shape for every setting (one compilation for all of them, and for conj-3.2):
#: tokens are zero-padded to TOKEN_DIM (W^K x and W^V x are unchanged), keys live in R^KEY_DIM, values
#: in R^VALUE_DIM, features are Taylor of order ORDER, and a demonstration set of size N <= N_MAX is
#: the first N of N_MAX rows (selected by weights 1/N, 0).
TOKEN_DIM, KEY_DIM, VALUE_DIM, ORDER, N_MAX = 3, 2, 2, 2, 128
NUM_FEATURES = sum(KEY_DIM**k for k in range(ORDER + 1))


@dataclasses.dataclass(frozen=True)
class Setting:
    """A bounded law (dimension <= TOKEN_DIM), a demonstration count, the student ball and the weight norms."""

    name: str
    distribution: dists.Distribution
    n: int
    ball: float  # B
    wk_norm: float  # ||W^K||_op
    wv_norm: float  # ||W^V||_op


SETTINGS = (
    # the two-point law x = ±1 makes the loss nearly two-valued: the least loose case of the bound
    Setting("two-point ±1", dists.sphere(1), 64, 1.0, 0.5, 1.0),
    Setting("uniform ball d=3", dists.uniform_ball(3), 128, 1.0, 0.7, 1.0),
    Setting("mixture ball + truncated Gaussian d=2",
            dists.mixture([dists.uniform_ball(2, radius=0.5, center=(0.5, 0.0)),
                           dists.truncated_gaussian(2, std=0.5, truncation=1.0, center=(-0.5, 0.0))]),
            64, 0.5, 0.6, 1.0),
)


@dataclasses.dataclass(frozen=True)
class Constants:
    """``T = sup ||W^V x||``, ``C = C_p = sup ||phi_p(W^K x)||`` (Taylor map), the exact map's ``C``, ``s``."""

    T: float
    C: float
    C_exact_map: float
    s: float


@dataclasses.dataclass(frozen=True)
class Population:
    """Population moments ``(E phi phi^T, E t phi^T, E||t||^2)`` and the error of the sup they induce."""

    sigma: jax.Array
    m: jax.Array
    c: jax.Array
    error: float
    source: str
    #: the atoms or reference-sample chunks the moments were computed from (float64 NumPy), for the reference
    samples: tuple = ()


@dataclasses.dataclass(frozen=True)
class SupGaps:
    """Per draw: the exact sup gap, the best random probe, the scale of the round-off, ``||W*||``."""

    gap: np.ndarray
    probe: np.ndarray
    scale: np.ndarray
    norm: np.ndarray


def random_weights(key, setting: Setting):
    """``W^K (d_k, TOKEN_DIM)``, ``W^V (d_v, TOKEN_DIM)``: Gaussian, rescaled to the setting's operator norms.

    Columns beyond the distribution's dimension are zero (they meet only the zero padding).
    """
    d = setting.distribution.dim
    kk, kv = jax.random.split(key)
    wk = np.zeros((KEY_DIM, TOKEN_DIM))
    wv = np.zeros((VALUE_DIM, TOKEN_DIM))
    wk[:, :d] = np.asarray(jax.random.normal(kk, (KEY_DIM, TOKEN_DIM), jnp.float64))[:, :d]
    wv[:, :d] = np.asarray(jax.random.normal(kv, (VALUE_DIM, TOKEN_DIM), jnp.float64))[:, :d]
    return setting.wk_norm * wk / np.linalg.norm(wk, 2), setting.wv_norm * wv / np.linalg.norm(wv, 2)


def constants(setting: Setting, wk, wv) -> Constants:
    """T, C_p (Taylor map), C (exact map); raises UnboundedSupportError for an unbounded law."""
    dist = setting.distribution
    t_bound = dist.value_bound(wv)
    s = np.linalg.norm(wk, 2) * dist.radius
    c_taylor = math.sqrt(sum(s ** (2 * k) / math.factorial(k) for k in range(ORDER + 1)))
    return Constants(T=t_bound, C=c_taylor, C_exact_map=dist.feature_bound(wk), s=float(s))


def bound_terms(b, c, t, n, delta=DELTA) -> tuple[float, float]:
    """``(4BC(T+BC)/sqrt(N), (T+BC)^2 sqrt(log(1/delta)/(2N)))``: the Rademacher and deviation terms."""
    s = t + b * c
    return 4 * b * c * s / np.sqrt(n), s**2 * np.sqrt(math.log(1 / delta) / (2 * n))


def theorem_bound(b, c, t, n, delta=DELTA):
    """``4BC(T+BC)/sqrt(N) + (T+BC)^2 sqrt(log(1/delta)/(2N))`` (docs/statements.md#thm-3-2, Theorem 3.2)."""
    rademacher, deviation = bound_terms(b, c, t, n, delta)
    return rademacher + deviation


_TAYLOR = ik.taylor_features(ORDER, key_dim=KEY_DIM)


def features_targets(tokens, wk, wv):
    """``phi_p(W^K x)`` and ``W^V x`` for tokens ``(n, TOKEN_DIM)``."""
    return _TAYLOR(tokens @ wk.T), tokens @ wv.T


def moments(phi, t, weights):
    """Weighted ``(E phi phi^T, E t phi^T, E||t||^2)`` over the rows (weights sum to 1)."""
    return (jnp.einsum("n,ni,nj->ij", weights, phi, phi), jnp.einsum("n,na,ni->ai", weights, t, phi),
            jnp.sum(weights * jnp.sum(t * t, axis=-1)))


@jax.jit
def _chunk_moments(tokens, wk, wv):
    phi, t = features_targets(tokens, wk, wv)
    return moments(phi, t, jnp.full(tokens.shape[0], 1.0 / tokens.shape[0], tokens.dtype))


_SAMPLERS: dict = {}


def sample_tokens(dist: dists.Distribution, key, count: int):
    """``count`` tokens of ``dist``, zero-padded to ``(count, TOKEN_DIM)`` float64.

    The sampler is jit-compiled once per (law, count) where it is traceable (one compilation instead of
    one per primitive); a sampler that is not (rejection sampling) runs eagerly.
    """
    def padded(k):
        return jnp.pad(dist.sample(k, count, jnp.float64), ((0, 0), (0, TOKEN_DIM - dist.dim)))

    cache_key = (dist, count)
    if cache_key not in _SAMPLERS:
        try:
            compiled = jax.jit(padded)
            compiled(key)
            _SAMPLERS[cache_key] = compiled
        except jax.errors.JAXTypeError:
            _SAMPLERS[cache_key] = padded
    return _SAMPLERS[cache_key](key)


def population(setting: Setting, key, wk, wv, chunk: int) -> Population:
    """Population moments: exact for the two-point law; else REFERENCE_CHUNKS independent chunks of
    ``chunk`` tokens (the draws' own shape, so no new compilation), with a split-half error estimate
    propagated through the Lipschitz constant of the sup (``|dG| <= B^2 ||dS||_op + 2B ||dM||_F + |dc|``)."""
    dist = setting.distribution
    wk, wv = jnp.asarray(wk), jnp.asarray(wv)
    if dist.kind == "sphere" and dist.dim == 1:
        points = np.asarray(dist.center)[None, :] + dist.scale * np.array([[-1.0], [1.0]])
        points = np.pad(points, ((0, 0), (0, TOKEN_DIM - 1)))
        phi, t = features_targets(jnp.asarray(points), wk, wv)
        sig, m, c = moments(phi, t, jnp.full(2, 0.5))
        return Population(sig, m, c, 0.0, "exact (two atoms)", (points,))
    chunks = [sample_tokens(dist, jax.random.fold_in(key, i), chunk) for i in range(REFERENCE_CHUNKS)]
    parts = [_chunk_moments(tokens, wk, wv) for tokens in chunks]
    half = REFERENCE_CHUNKS // 2
    s1, m1, c1 = (sum(p[j] for p in parts[:half]) / half for j in range(3))
    s2, m2, c2 = (sum(p[j] for p in parts[half:]) / half for j in range(3))
    b = setting.ball
    # the split-half difference is ~2x the standard error of the full mean: halve it
    error = 0.5 * (b * b * float(np.linalg.norm(s1 - s2, 2)) + 2 * b * float(np.linalg.norm(m1 - m2))
                   + float(abs(c1 - c2)))
    return Population(0.5 * (s1 + s2), 0.5 * (m1 + m2), 0.5 * (c1 + c2), error,
                      f"reference sample of {REFERENCE_CHUNKS * chunk}",
                      tuple(np.asarray(t, np.float64) for t in chunks))


def gap_problem(tokens, weights, wk, wv, pop_sigma, pop_m, pop_c, cross_sign=1.0):
    """``(dS, dM, dc)`` of one draw: ``L(W) - L_N(W) = dc - 2<W, dM> + <W^T W, dS>``.

    ``cross_sign`` multiplies the empirical cross term (a check's mutant flips it).
    """
    phi, t = features_targets(tokens, wk, wv)
    sig, m, c = moments(phi, t, weights)
    return pop_sigma - sig, pop_m - cross_sign * m, pop_c - c


def sup_gap(tokens, probes, weights, wk, wv, pop_sigma, pop_m, pop_c, ball, cross_sign):
    """One draw: the exact ``sup_{||W|| <= B} L - L_N``, and the best of the random probes (for the guard)."""
    d_sigma, d_m, d_c = gap_problem(tokens, weights, wk, wv, pop_sigma, pop_m, pop_c, cross_sign)
    lam, q = jnp.linalg.eigh(0.5 * (d_sigma + d_sigma.T))
    beta = (d_m @ q).reshape(-1)  # row r of W in the eigenbasis: index r * m + i <-> lam_i
    sol = ik.max_quadratic_in_eigenbasis(jnp.tile(lam, d_m.shape[0]), beta, ball)
    w = ball * probes.reshape(probes.shape[0], *d_m.shape)
    probe_values = jnp.einsum("pai,ij,paj->p", w, d_sigma, w) - 2 * jnp.einsum("pai,ai->p", w, d_m)
    scale = ball * ball * jnp.linalg.norm(d_sigma) + 2 * ball * jnp.linalg.norm(d_m)
    return d_c + sol.value, d_c + jnp.maximum(jnp.max(probe_values), 0.0), scale, jnp.linalg.norm(sol.coordinates)


@jax.jit
def _sup_gaps(tokens, probe_key, weights, wk, wv, pop_sigma, pop_m, pop_c, ball, cross_sign):
    probes = jax.random.normal(probe_key, (tokens.shape[0], PROBES, VALUE_DIM * NUM_FEATURES), tokens.dtype)
    probes = probes / jnp.linalg.norm(probes, axis=-1, keepdims=True)
    per_draw = jax.vmap(sup_gap, in_axes=(0, 0) + (None,) * 8)
    return per_draw(tokens, probes, weights, wk, wv, pop_sigma, pop_m, pop_c, ball, cross_sign)


def sup_gaps(tokens, key, weights, wk, wv, pop: Population, ball, *, cross_sign=1.0) -> SupGaps:
    """Per-draw exact sup gaps for tokens ``(draws, N_MAX, TOKEN_DIM)`` and row weights ``(N_MAX,)`` (NumPy)."""
    f64 = jnp.float64
    gap, probe, scale, norm = _sup_gaps(tokens, key, weights, jnp.asarray(wk), jnp.asarray(wv), pop.sigma,
                                        pop.m, pop.c, jnp.asarray(ball, f64), jnp.asarray(cross_sign, f64))
    return SupGaps(np.asarray(gap), np.asarray(probe), np.asarray(scale), np.asarray(norm))


def demo_weights(n: int):
    """Row weights selecting the first ``n`` of ``N_MAX`` rows: ``1/n`` then 0."""
    return jnp.asarray(np.where(np.arange(N_MAX) < n, 1.0 / n, 0.0))


def clopper_pearson_lower(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided lower confidence limit of a binomial proportion (Clopper-Pearson)."""
    return 0.0 if k == 0 else float(stats.beta.ppf(1 - confidence, k, n - k + 1))


# ------------------------------------------------------------------ the reference side of the sup gap


def reference_population(pop: Population, wk, wv):
    """:func:`population`'s moments recomputed by :mod:`verification.oracles.reference` from the same atoms or reference
    sample: ``(E phi phi^T, E t phi^T, E||t||^2)`` and the number of tokens averaged (the summation-error scale)."""
    wk, wv = np.asarray(wk, np.float64), np.asarray(wv, np.float64)
    tokens = pop.samples
    parts = [ref.kd_moments(ref.taylor_features(t @ wk.T, ORDER), t @ wv.T, np.full(t.shape[0], 1.0 / t.shape[0]))
             for t in tokens]
    return tuple(sum(p[j] for p in parts) / len(parts) for j in range(3)), sum(t.shape[0] for t in tokens)


def reference_sup_gaps(tokens, n: int, wk, wv, population_moments, ball, *, cross_sign: float = 1.0) -> np.ndarray:
    """Per draw, ``sup_{||W||_HS <= B} L - L_N`` by :func:`verification.oracles.reference.sup_gap` on the first ``n`` rows of
    ``tokens (draws, N_MAX, TOKEN_DIM)`` (the dense ``d_v m``-dimensional problem, the dual bisection)."""
    demos = np.asarray(tokens, np.float64)[:, :n]
    wk, wv = np.asarray(wk, np.float64), np.asarray(wv, np.float64)
    s, m, c = ref.kd_moments(ref.taylor_features(demos @ wk.T, ORDER), demos @ wv.T, np.full(demos.shape[:2], 1.0 / n))
    return ref.sup_gap(population_moments, (s, cross_sign * m, c), ball)


def sup_gap_agreement(library_gaps, reference_gaps, scale, population_tokens: int, t_bound: float, c_bound: float,
                      ball: float) -> np.ndarray:
    """``|library - reference|`` per draw in units of its round-off budget (<= 1 agrees).

    Budget: ``64 eps (1 + B^2 ||dS|| + 2B ||dM||)`` for the eigendecomposition and the secular equation (the solver
    guard's), plus the summation error of the population moments, at most ``N_pop eps`` times their largest term
    per entry (naive summation of ``N_pop`` products bounded by ``C^2``, ``CT``, ``T^2``), which moves the sup by at most
    ``4 N_pop eps (T + B C)^2``.
    """
    unit = eps(np.float64)
    budget = OPERATIONS * unit * (1.0 + np.asarray(scale)) + 4.0 * population_tokens * unit * (t_bound + ball * c_bound) ** 2
    return np.abs(np.asarray(library_gaps) - np.asarray(reference_gaps)) / budget
