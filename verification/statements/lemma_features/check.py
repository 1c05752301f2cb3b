"""lemma-features: explicit feature maps of exp(u.z) converge at the predicted rates (docs/statements.md#feature-maps).

Statements checked:

* Random features (positive iid, positive orthogonal, trigonometric) are unbiased: the mean relative
  error over R independent keys is within an allowance of 0 (:func:`mean_allowance`).
* Their mean squared relative error is ``sigma^2 / m`` with the per-feature relative
  variance of docs/statements.md#lemma-features: ``exp(|u+z|^2) − 1`` (positive iid: the variance
  ``exp(2u.z)(exp(|u+z|^2) − 1)`` over ``kappa^2 = exp(2u.z)``) and, for the trigonometric
  map, ``exp(|δ|^2) − 1 + exp(−|δ|^2)/2`` with ``δ = u − z`` (derived here:
  ``2cos(ωu+b)cos(ωz+b) = cos(ωδ) + cos(ω(u+z)+2b)``, whose variance is
  ``1 − e^{−|δ|^2} + e^{−2|δ|^2}/2``; divide by ``e^{−|δ|^2}``). Judged at each m for ``|u+z| <= 1``
  (:func:`mse_allowance`).
* The log-log slope of the RMS error against m is −1/2 within z standard errors
  (weighted regression, delta-method errors of log s_m from the exact null moments), and reported per map.
* The orthogonal variant is no worse than iid (one-sided Cantelli bound on the difference of the MSEs).

Levels: every judgement above is one statistical judgement (:meth:`LemmaFeatures.statistical_judgements`
counts them: 36 means, 12 variances, 6 slopes, 6 orthogonal-vs-iid), each at the level ``alpha`` of the
run-wide false-alarm budget (:mod:`verification.core.budget`).

Null distributions. A positive feature's relative estimate is exactly lognormal, ``exp(g r − r^2/2)`` with
``g ~ N(0, 1)`` and ``r = |u+z|`` up to 2 (log-variance 4): its moments are known in closed form but a sample of
a few thousand features usually misses the rare large draws that carry its variance, so *sample* standard
errors come out too small exactly when the mean or MSE comes out low, and studentised intervals then report
false biases. Every standard error here is therefore the exact one under the statement
(:func:`null_moments`), and a normal approximation is used only where the statistic is nearly symmetric
(the grand mean of ``>= 3072`` features for ``|u+z| <= 1``: skewness <= 0.12, with a Cornish-Fisher upper
side); elsewhere the tails are distribution-free bounds from the exact moments: Bernstein for the bounded
trigonometric features, the sub-Gaussian lower tail of a mean of nonnegative variables, and Cantelli above.
The slopes keep the delta-method normal interval (the logarithm tames the right tail; exact weights).

Also checked (deterministic, no level):

* Taylor truncation of order p: ``|sum_{n<=p} t^n/n! − e^t| <= e^{|t|}|t|^{p+1}/(p+1)! + round-off``
  for every order p (p <= 8 for d_k = 2, p <= 5 for d_k = 4), searched by Hypothesis.
* The limit, reported not hidden: the features needed for 10 % relative RMS error,
  ``m* = sigma^2(r)/0.1^2``, predicted and measured, for ``|u+z| = r`` up to 2.
  Measured values at large r are lower estimates (heavy-tailed lognormal features).

The m values use disjoint blocks of one draw per key (16, 64, 256 rows, block-aligned for
the orthogonal map), so the estimates at different m are independent.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

import iclkd_jax as ik
from verification.cases.explore import explore
from verification.cases.strategies import standard_normal_pool
from verification.core.budget import Judgement
from verification.core.model import Check, RunContext
from verification.core.tolerances import eps, require_finite
from verification.oracles import reference
from verification.oracles.feature_variance import per_feature_variance

KEY_DIM = 4
M_GRID = (16, 64, 256)
RADII = (0.5, 1.0, 1.5, 2.0)       # |u + z|
RATE_RADII = (0.5, 1.0)            # where the variance interval is judged
HALF_DIFFERENCE = 0.3              # |u − z| / 2
KINDS = ("positive", "orthogonal", "trig")
TAYLOR_MAX_ORDER = {2: 8, 4: 5}
TARGET_RELATIVE_ERROR = 0.1


def _pairs(key):
    """Rows u, z (len(RADII), KEY_DIM) with |u + z| = r and |u − z| = 2 * HALF_DIFFERENCE."""
    a_key, w_key = jax.random.split(key)
    a = np.array(jax.random.normal(a_key, (len(RADII), KEY_DIM)), np.float64)
    w = np.array(jax.random.normal(w_key, (len(RADII), KEY_DIM)), np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    w -= np.sum(w * a, axis=1, keepdims=True) * a
    w *= HALF_DIFFERENCE / np.linalg.norm(w, axis=1, keepdims=True)
    s = np.asarray(RADII)[:, None] * a
    return s / 2 + w, s / 2 - w


CHUNK = 96                         # keys per compiled call: one compilation per map, whatever the profile


@functools.partial(jax.jit, static_argnames=("kind",))
def _draw(keys, *, kind):
    """The library's draws ``(omega, offset)`` for a chunk of keys, ``sum(M_GRID)`` rows each."""
    def one(key):
        if kind == "trig":
            fm = ik.trig_random_features(key, sum(M_GRID), key_dim=KEY_DIM)
            return fm.omega, fm.offset
        fm = ik.positive_random_features(key, sum(M_GRID), key_dim=KEY_DIM, orthogonal=kind == "orthogonal")
        return fm.omega, jnp.zeros((sum(M_GRID),), fm.omega.dtype)
    return jax.vmap(one)(keys)


@functools.partial(jax.jit, static_argnames=("kind",))
def _estimates_chunk(omega, offset, u, z, *, kind):
    """``<phi(u_p), phi(z_p)>`` of the library's FeatureMap for every key and m: ``(keys, len(M_GRID), P)``."""
    map_kind = "trig" if kind == "trig" else "positive"

    def one(om, off):
        out, start = [], 0
        for m in M_GRID:
            block = ik.FeatureMap(map_kind, key_dim=KEY_DIM, omega=om[start:start + m],
                                  offset=off[start:start + m] if map_kind == "trig" else None)
            out.append(jnp.sum(block(u) * block(z), -1))
            start += m
        return jnp.stack(out)
    return jax.vmap(one)(omega, offset)


@jax.jit
def _uniform_like(key, omega):
    """Unit-variance uniform frequencies (the mutant's non-Gaussian Omega)."""
    return jax.random.uniform(jax.random.fold_in(key, 1), omega.shape, omega.dtype, -math.sqrt(3), math.sqrt(3))


def estimates_under_test(keys, u, z, kind, mutant):
    """Kernel estimates of the map under test, ``(R, len(M_GRID), P)``, with a feature-map mutant applied.

    The mutants are exact on the estimate: features times ``exp(|u|^2/2)`` (the missing
    ``−|u|^2/2``) multiply it by ``exp(|u|^2/2 + |z|^2/2)``; a normalisation ``m^{-1}`` on both
    feature vectors divides it by m; uniform frequencies replace the library's Omega.
    """
    out = []
    for c in range(0, keys.shape[0], CHUNK):
        omega, offset = _draw(keys[c:c + CHUNK], kind=kind)
        if mutant == "uniform-frequencies" and kind != "orthogonal":
            omega = _uniform_like(keys[c], omega)
        out.append(np.asarray(_estimates_chunk(omega, offset, jax.device_put(u), jax.device_put(z), kind=kind)))
    est = np.concatenate(out)
    if mutant == "positive-missing-half-norm" and kind != "trig":
        est = est * np.exp(0.5 * np.sum(u * u, -1) + 0.5 * np.sum(z * z, -1))
    elif mutant == "normalisation-1/m":
        est = est / np.asarray(M_GRID, np.float64)[:, None]
    return est


def feature_moments(kind, u, z):
    """Central moments ``(mu2, mu3, mu4)`` of one feature's relative estimate ``Y`` of ``exp(u.z)`` (``E Y = 1``),
    and a bound ``b >= |Y - 1|`` (``inf`` if unbounded), per pair.

    Positive features (iid rows; orthogonal rows have the same marginal): ``Y = exp(g r - r^2/2)``, ``g ~ N(0, 1)``,
    ``r = |u+z|``, so ``E Y^k = exp(k(k-1) r^2/2)``: ``mu2 = e^{r^2} - 1``, ``mu3 = e^{3r^2} - 3e^{r^2} + 2``,
    ``mu4 = e^{6r^2} - 4e^{3r^2} + 6e^{r^2} - 3``, unbounded. Trigonometric: ``Y = e^{|δ|^2/2} [cos(ω.δ) +
    cos(ω.(u+z) + 2b)]``, ``|Y - 1| <= b = 2e^{|δ|^2/2} + 1``; ``mu2`` exact, ``mu4 <= b^2 mu2`` (a bound), ``mu3``
    not used (trig judgements are Bernstein bounds).
    """
    mu2 = per_feature_variance(kind, u, z)
    if kind == "trig":
        bound = 2 * np.exp(0.5 * np.sum((u - z) ** 2, -1)) + 1
        return mu2, np.full_like(mu2, np.nan), bound ** 2 * mu2, bound
    e1 = np.exp(np.sum((u + z) ** 2, -1))
    return mu2, e1 ** 3 - 3 * e1 + 2, e1 ** 6 - 4 * e1 ** 3 + 6 * e1 - 3, np.full_like(mu2, np.inf)


def null_moments(kind, u, z, m):
    """Under the statement, per pair, for one key's estimate ``X`` (mean of m iid features): ``v = E(X-1)^2 =
    mu2/m``, ``E(X-1)^4 = mu4/m^3 + 3(m-1) mu2^2/m^3``, the feature skewness ratio ``mu3/mu2^{3/2}`` and ``b``.

    Orthogonal rows: the iid values, an upper bound on the variance (positive orthogonal features have a
    mean squared error no larger than iid ones: Choromanski et al., ICLR 2021, Thm 2). These exact moments,
    not sample moments, give every standard error: a heavy-tailed (lognormal) sample that misses its rare
    large draws underestimates its own variance and fourth moment, which made studentised intervals
    report false biases and variance deficits.
    """
    mu2, mu3, mu4, bound = feature_moments("positive" if kind == "orthogonal" else kind, u, z)
    return mu2 / m, mu4 / m ** 3 + 3 * (m - 1) * mu2 ** 2 / m ** 3, mu3 / mu2 ** 1.5, bound


def mean_allowance(kind, radius, m, v, skew, bound, keys, alpha, z):
    """Allowed ``(below, above)`` deviations of the mean relative error from 0 at level ``alpha`` (two-sided).

    * Trigonometric (bounded, ``|X - 1| <= b``): Bernstein, ``P(|mean| >= t) <= 2 exp(-R t^2 / (2(v + b t/3)))``,
      solved for ``t`` with ``L = ln(2/alpha)``: ``t = (2Lb/3 + sqrt((2Lb/3)^2 + 8RLv)) / (2R)``. Exact.
    * Positive, ``|u+z| <= 1`` (the CLT domain: the grand mean of ``mR >= 3072`` lognormal features has skewness
      ``gamma = (mu3/mu2^{3/2}) / sqrt(mR) <= 0.12``): normal interval with the exact standard error
      ``sqrt(v/R)``; the right-skewed upper side takes the Cornish-Fisher value ``z + gamma(z^2 - 1)/6``, the
      lower side (lighter than normal for a right skew) ``z``.
    * Positive, ``|u+z| > 1`` (skewness of the grand mean up to ~7.5 at ``|u+z| = 2``: no
      normal approximation): distribution-free bounds from the
      exact moments. Below: ``X >= 0``, so ``E e^{-lambda X} <= exp(-lambda + lambda^2 E X^2/2)`` and
      ``P(mean <= -t) <= exp(-R t^2 / (2(1 + v)))``: ``t = sqrt(2(1+v) ln(2/alpha)/R)``. Above: Cantelli,
      ``P(mean >= t) <= v/(v + R t^2)``: ``t = sqrt(v (2/alpha - 1)/R)``.
    """
    if kind == "trig":
        log_term = math.log(2 / alpha)
        lin = 2 * log_term * bound / 3
        t = (lin + math.sqrt(lin ** 2 + 8 * keys * log_term * v)) / (2 * keys)
        return t, t
    if radius in RATE_RADII:
        se = math.sqrt(v / keys)
        gamma = skew / math.sqrt(m * keys)
        return z * se, (z + gamma * (z * z - 1) / 6) * se
    return (math.sqrt(2 * (1 + v) * math.log(2 / alpha) / keys),
            math.sqrt(v * (2 / alpha - 1) / keys))


def mse_allowance(v, fourth, keys, alpha):
    """Allowed ``(below, above)`` deviations of the mean squared relative error ``mean_k (X_k - 1)^2`` from ``v``.

    ``D = (X - 1)^2 >= 0`` with ``E D^2 = E(X-1)^4`` (exact, :func:`null_moments`; for trig an upper bound, which
    only widens both sides). ``mean D`` is far from normal (skewness 0.3-1.4 at ``R = 192`` for ``|u+z| <= 1``),
    so both sides are distribution-free. Below (nonnegative summands):
    ``P(mean D - v <= -t) <= exp(-R t^2 / (2 E D^2))``, ``t = sqrt(2 E D^2 ln(2/alpha)/R)``. Above (Cantelli):
    ``P(mean D - v >= t) <= Var D / (Var D + R t^2)``, ``t = sqrt((E D^2 - v^2)(2/alpha - 1)/R)``.
    """
    return (math.sqrt(2 * fourth * math.log(2 / alpha) / keys),
            math.sqrt(max(fourth - v * v, 0.0) * (2 / alpha - 1) / keys))


def _side_ratio(deviation, below, above):
    """``deviation`` over the allowance on its side: <= 1 within the interval ``[-below, above]``."""
    return float(deviation / above if deviation > 0 else -deviation / below)


def _slope(var, relative_se):
    """Weighted LS slope of log RMS on log m with its standard error (delta method: ``se(log s_m) =
    se(s_m^2) / (2 s_m^2)``, from the exact null moments, ``relative_se = se(s_m^2)/E s_m^2``)."""
    x = np.log(np.asarray(M_GRID, np.float64))
    y = 0.5 * np.log(var)
    w = 1.0 / np.maximum((relative_se / 2) ** 2, 1e-300)
    xm, ym = np.sum(w * x) / np.sum(w), np.sum(w * y) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    return float(np.sum(w * (x - xm) * (y - ym)) / sxx), float(1.0 / np.sqrt(sxx))


@dataclasses.dataclass(frozen=True)
class TaylorCase:
    seed: int
    key_dim: int
    scale: float

    def build(self):
        pool = standard_normal_pool(self.seed, 6 * self.key_dim).reshape(6, self.key_dim) * self.scale
        return pool[:3] / math.sqrt(self.key_dim), pool[3:] / math.sqrt(self.key_dim)

    def describe(self):
        return dataclasses.asdict(self)


@functools.partial(jax.jit, static_argnames=("key_dim", "order"))
def _taylor_features(u, *, key_dim, order):
    return ik.taylor_features(order, key_dim=key_dim)(u)


def taylor_kernels_under_test(u, z, key_dim, mutant):
    """``sum_{n<=p} (u.z)^n/n!`` for every order p <= the maximum, from one feature call (prefix blocks)."""
    order = TAYLOR_MAX_ORDER[key_dim]
    pu = np.asarray(_taylor_features(jax.device_put(u), key_dim=key_dim, order=order), np.float64)
    pz = np.asarray(_taylor_features(jax.device_put(z), key_dim=key_dim, order=order), np.float64)
    kernels, start = [], 0
    total = np.zeros(u.shape[0])
    for n in range(order + 1):
        size = key_dim ** n
        block = np.sum(pu[:, start:start + size] * pz[:, start:start + size], axis=-1)
        if mutant == "taylor-missing-factorial":
            block = block * math.factorial(n)
        total = total + block
        kernels.append(total.copy())
        start += size
    return kernels


REFERENCE_FEATURES = 64             # features of the maps compared entry by entry with the reference


@functools.partial(jax.jit, static_argnames=("dtype",))
def _maps_program(key, u, z, *, dtype):
    """Every feature map of the library, drawn from ``key`` in ``dtype``: features of ``u``, ``kernel(u, z)``
    and the draw (so the reference can be evaluated on the same ``Omega, b``)."""
    keys = jax.random.split(key, 3)
    maps = {"positive": ik.positive_random_features(keys[0], REFERENCE_FEATURES, key_dim=KEY_DIM, dtype=dtype),
            "orthogonal": ik.positive_random_features(keys[1], REFERENCE_FEATURES, key_dim=KEY_DIM, orthogonal=True,
                                                      dtype=dtype),
            "trig": ik.trig_random_features(keys[2], REFERENCE_FEATURES, key_dim=KEY_DIM, dtype=dtype),
            "taylor": ik.taylor_features(TAYLOR_MAX_ORDER[KEY_DIM], key_dim=KEY_DIM),
            "identity": ik.identity_features(key_dim=KEY_DIM)}
    out = {name: {"phi": fm(u), "kernel": fm.kernel(u, z)} for name, fm in maps.items()}
    taylor2 = ik.taylor_features(TAYLOR_MAX_ORDER[2], key_dim=2)
    out["taylor2"] = {"phi": taylor2(u[:, :2]), "kernel": taylor2.kernel(u[:, :2], z[:, :2])}
    for name in ("positive", "orthogonal", "trig"):
        out[name]["omega"] = maps[name].omega
    out["trig"]["offset"] = maps["trig"].offset
    return out


def feature_maps_vs_reference(key, u, z) -> tuple[float, dict]:
    """Every map's features and kernel against :mod:`verification.oracles.reference` on the same draw, both dtypes.

    Tolerance per entry (``u`` = unit round-off of the dtype, inputs already rounded to it): positive
    features ``4 rho phi`` with ``rho = (d_k + 6) u (1 + max|Omega||u| + |u|^2)`` (the exponent's absolute
    error); trigonometric ``4 rho e^{|u|^2/2} sqrt(2/m)`` (the phase's); Taylor ``4 (p + 1)(d_k + 2) u phi(|u|)``
    (p rounded factors); identity exact. ``kernel(u, z)``: ``4 (2 rho + (m + 2) u) |phi(u)|.|phi(z)|``.
    """
    worst, figures = 0.0, {}
    for dtype in ("float64", "float32"):
        uu, zz = u.astype(dtype).astype(np.float64), z.astype(dtype).astype(np.float64)
        unit = eps(dtype) / 2
        lib = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64),
                                     _maps_program(key, jax.device_put(uu.astype(dtype)),
                                                   jax.device_put(zz.astype(dtype)), dtype=dtype))
        for name, got in lib.items():
            dk = 2 if name == "taylor2" else KEY_DIM
            a, b = uu[:, :dk], zz[:, :dk]
            if name in ("positive", "orthogonal"):
                phi_a, phi_b = (reference.positive_random_features(x, got["omega"]) for x in (a, b))
                rho = (dk + 6) * unit * (1 + (np.abs(a) @ np.abs(got["omega"]).T).max() + np.sum(a * a, -1).max())
                bound_a, bound_b = phi_a, phi_b
            elif name == "trig":
                phi_a, phi_b = (reference.trig_random_features(x, got["omega"], got["offset"]) for x in (a, b))
                rho = (dk + 6) * unit * (1 + (np.abs(a) @ np.abs(got["omega"]).T).max() + np.sum(a * a, -1).max())
                bound_a, bound_b = (np.exp(0.5 * np.sum(x * x, -1, keepdims=True)) * math.sqrt(2 / REFERENCE_FEATURES)
                                    * np.ones_like(p) for x, p in ((a, phi_a), (b, phi_b)))
            elif name.startswith("taylor"):
                order = TAYLOR_MAX_ORDER[dk]
                phi_a, phi_b = reference.taylor_features(a, order), reference.taylor_features(b, order)
                rho = (order + 1) * (dk + 2) * unit
                bound_a, bound_b = reference.taylor_features(np.abs(a), order), reference.taylor_features(np.abs(b), order)
            else:
                phi_a, phi_b, rho, bound_a, bound_b = a, b, 0.0, np.abs(a), np.abs(b)
            m = phi_a.shape[-1]
            with np.errstate(divide="ignore", invalid="ignore"):
                feature = np.where(got["phi"] == phi_a, 0.0, np.abs(got["phi"] - phi_a) / (4 * rho * bound_a))
                kernel_tol = 4 * (2 * rho + (m + 2) * unit) * (bound_a @ bound_b.T)
                kernel = np.where(got["kernel"] == phi_a @ phi_b.T, 0.0,
                                  np.abs(got["kernel"] - phi_a @ phi_b.T) / kernel_tol)
            require_finite({f"library {name} features ({dtype})": got["phi"],
                            f"library {name} kernel ({dtype})": got["kernel"],
                            f"reference {name} features ({dtype})": phi_a})
            ratio = float(max(feature.max(), kernel.max()))
            figures[f"{name}_{dtype}"] = ratio
            worst = max(worst, ratio)
    return worst, figures


class LemmaFeatures(Check):
    id = "lemma-features"
    kind = "lemma"
    order = 313  # its place in the report: docs/statements.md order
    title = "random-feature and Taylor approximations of exp(u.z): unbiased, m^{-1/2} rate, variance formula, remainder"
    mutants = {
        "positive-missing-half-norm": "positive features without their −|u|²/2 (biased by exp(|u|²/2+|z|²/2))",
        "normalisation-1/m": "random features normalised by m^{-1} instead of m^{-1/2}",
        "uniform-frequencies": "frequencies uniform on [−√3, √3] (unit variance, not Gaussian)",
        "taylor-missing-factorial": "Taylor features u^{⊗n} without their 1/√(n!)",
    }

    @classmethod
    def statistical_judgements(cls, profile):
        return {
            "unbiased": Judgement(len(KINDS) * len(M_GRID) * len(RADII), 2,
                                  "mean relative error of a random-feature kernel estimate = 0"),
            "variance": Judgement((len(KINDS) - 1) * len(M_GRID) * len(RATE_RADII), 2,
                                  "mean squared relative error = sigma^2/m"),
            "slope": Judgement(len(KINDS) * len(RATE_RADII), 2, "log-log slope of the RMS error = -1/2"),
            "orthogonal-no-worse": Judgement(len(M_GRID) * len(RATE_RADII), 1,
                                             "orthogonal features' MSE <= iid features' MSE"),
        }

    def run(self, ctx: RunContext):
        start = time.perf_counter()
        z_unbiased, _, z_slope, _ = (ctx.z(name) for name in self.statistical_judgements(
            ctx.profile))
        pair_key, draw_key = jax.random.split(ctx.key)
        u, z = _pairs(pair_key)
        kappa = np.exp(np.sum(u * z, axis=-1))
        # every map, both dtypes, entry by entry against the reference on the same draw (two-sided)
        reference_ratio, reference_figures = feature_maps_vs_reference(jax.random.fold_in(draw_key, 7), u, z)
        n_keys = CHUNK * max(2, ctx.profile.examples * ctx.profile.scale // 2)
        keys = jax.random.split(draw_key, n_keys)
        failures, stats = [], {}
        if not reference_ratio <= 1.0:
            failures.append({"test": "feature maps = reference", "ratio_per_map": reference_figures})
        alpha = ctx.level()
        margins = {"unbiased": 0.0, "variance": 0.0}      # largest deviation / allowance on its side
        for kind in KINDS:
            est = estimates_under_test(keys, u, z, kind, ctx.mutant)
            rel = est / kappa - 1.0                                        # (R, len(M_GRID), P)
            mean, mse = rel.mean(axis=0), (rel * rel).mean(axis=0)         # mse about the known mean 0
            mse_se = np.empty_like(mse)
            for j, m in enumerate(M_GRID):
                v, fourth, skew, bound = null_moments(kind, u, z, m)
                mse_se[j] = np.sqrt(np.maximum(fourth - v * v, 0.0) / n_keys)
                for p, r in enumerate(RADII):
                    below, above = mean_allowance(kind, r, m, v[p], skew[p], bound[p], n_keys, alpha, z_unbiased)
                    margins["unbiased"] = max(margins["unbiased"], _side_ratio(mean[j, p], below, above))
                    if not -below - 64 * eps("float64") <= mean[j, p] <= above + 64 * eps("float64"):
                        failures.append({"test": "unbiased", "kind": kind, "m": m, "radius": r,
                                         "mean_rel_error": float(mean[j, p]), "allowed": [-below, above]})
                    if r in RATE_RADII and kind != "orthogonal":
                        below, above = mse_allowance(v[p], fourth[p], n_keys, alpha)
                        margins["variance"] = max(margins["variance"], _side_ratio(mse[j, p] - v[p], below, above))
                        if not -below <= mse[j, p] - v[p] <= above:
                            failures.append({"test": "variance sigma^2/m", "kind": kind, "m": m, "radius": r,
                                             "mse": float(mse[j, p]), "predicted": float(v[p]),
                                             "allowed": [-below, above]})
            stats[kind] = (mean, mse, mse_se)
        slopes = {}
        for kind in KINDS:
            _, var, var_se = stats[kind]
            predicted = np.stack([null_moments(kind, u, z, m)[0] for m in M_GRID])
            for p, r in enumerate(RADII):
                if r not in RATE_RADII:
                    continue
                slope, se = _slope(var[:, p], var_se[:, p] / predicted[:, p])
                slopes[f"{kind}@|u+z|={r}"] = [slope, se]
                if abs(slope + 0.5) > z_slope * se:
                    failures.append({"test": "slope -1/2", "kind": kind, "radius": r, "slope": slope, "se": se})
        # orthogonal no worse, one-sided Cantelli (the MSEs are far from normal, see mse_allowance): under the
        # statement E(mse_o - mse_i) <= 0 and sd(mse_o - mse_i) <= sd(mse_o) + sd(mse_i) <= 2 sd(mse_i) whatever
        # their dependence (the iid moments bound the orthogonal ones, see null_moments), so
        # P(mse_o - mse_i >= t) <= alpha at t = 2 sd(mse_i) sqrt(1/alpha - 1)
        (_, var_i, se_i), (_, var_o, _) = stats["positive"], stats["orthogonal"]
        orth_ratio = var_o / var_i
        rate_columns = np.isin(np.asarray(RADII), RATE_RADII)[None, :]
        orthogonal_allowance = 2 * se_i * math.sqrt(1 / alpha - 1)
        margins["orthogonal-no-worse"] = float(np.max(np.where(rate_columns, (var_o - var_i) / orthogonal_allowance,
                                                               -np.inf)))
        worse = (var_o - var_i > orthogonal_allowance) & rate_columns
        if np.any(worse):
            j, p = np.argwhere(worse)[0]
            failures.append({"test": "orthogonal no worse", "m": M_GRID[j], "radius": RADII[p],
                             "mse_orthogonal": float(var_o[j, p]), "mse_iid": float(var_i[j, p])})
        # the limit: features needed for a 10 % relative RMS error, predicted and measured (from m = 256)
        sigma2 = per_feature_variance("positive", u, z)
        m_needed = {f"|u+z|={r}": {"predicted": float(sigma2[p] / TARGET_RELATIVE_ERROR ** 2),
                                   "measured": float(M_GRID[-1] * var_i[-1, p] / TARGET_RELATIVE_ERROR ** 2)}
                    for p, r in enumerate(RADII)}

        def measure(case: TaylorCase):
            tu, tz = case.build()
            kernels = taylor_kernels_under_test(tu, tz, case.key_dim, ctx.mutant)
            t = np.sum(tu * tz, axis=-1)
            roundoff = 64 * eps("float64") * np.exp(np.linalg.norm(tu, axis=-1) * np.linalg.norm(tz, axis=-1))
            ratio = 0.0
            for p, kernel in enumerate(kernels):
                bound = np.exp(np.abs(t)) * np.abs(t) ** (p + 1) / math.factorial(p + 1)
                ratio = max(ratio, float(np.max(np.abs(kernel - np.exp(t)) / (bound + roundoff))))
            return {"ratio": ratio, "max_abs_logit": float(np.abs(t).max())}

        strategy = st.builds(TaylorCase, st.integers(0, 2**31 - 1), st.sampled_from(tuple(TAYLOR_MAX_ORDER)),
                             st.floats(0.05, 2.5))
        exploration = explore(strategy, measure, max_examples=ctx.profile.examples * 2,
                              seed_value=ctx.hypothesis_seed, fails=lambda m: m["ratio"] > 1.0, shrink=ctx.shrink)
        taylor_worst = max(m["ratio"] for m in exploration.measurements)
        if exploration.counterexample:
            case, m = exploration.counterexample
            failures.append({"test": "Taylor remainder", "case": case.describe(), **m})
        figures = {"keys": n_keys, "m_grid": list(M_GRID), "radii_|u+z|": list(RADII),
                   "slopes_[value,se]": slopes, "slope_z": z_slope,
                   "mean_rel_error_max": {k: float(np.abs(stats[k][0]).max()) for k in KINDS},
                   "mse_times_m_over_sigma2_iid": (var_i * np.asarray(M_GRID)[:, None] /
                                                   per_feature_variance("positive", u, z)).tolist(),
                   "orthogonal_over_iid_mse": orth_ratio.tolist(),
                   "deviation_over_allowance": margins,
                   "m_needed_for_10pct": m_needed,
                   "taylor_max_error_over_remainder": taylor_worst, "taylor_cases": exploration.cases,
                   "feature_maps_vs_reference_over_tolerance": reference_figures,
                   "cases_per_second": (n_keys * len(KINDS) + exploration.cases) / (time.perf_counter() - start)}
        worst_slope = max(abs(s + 0.5) / se for s, se in slopes.values())
        return self.result(
            ctx, status="violated" if failures else "holds", cases=n_keys * len(KINDS) + exploration.cases,
            worst=max(worst_slope / z_slope, *margins.values(), taylor_worst, reference_ratio),
            worst_label="max(|slope+1/2|/(z se), mean / MSE / orthogonal-minus-iid deviation over its allowance, "
                        "Taylor error/bound, features/reference error/tolerance)",
            tolerance=1.0,
            tolerance_reason=f"random features, level {ctx.level():.2g} each from the run's false-alarm budget, "
                             f"exact null moments: means normal (z = {z_unbiased:.2f}, Cornish-Fisher upper side) "
                             "for |u+z| <= 1, Bernstein (trig) or nonnegative-lower/Cantelli-upper bounds beyond; "
                             "MSEs nonnegative-lower/Cantelli-upper; orthogonal-minus-iid Cantelli; slopes normal "
                             "(delta method); Taylor: Lagrange remainder + 64 eps exp(|u||z|) round-off",
            figures=figures, counterexample=failures[0] if failures else None,
            summary=(f"slopes {', '.join(f'{k} {v[0]:.3f}' for k, v in slopes.items() if '1.0' in k)} "
                     f"(R={n_keys} keys); orth/iid MSE <= "
                     f"{float(orth_ratio[rate_columns.repeat(len(M_GRID), 0)].max()):.2f} for |u+z| <= 1; Taylor error <= "
                     f"{taylor_worst:.2f} x remainder; m for 10% error at |u+z|=2: "
                     f"{m_needed['|u+z|=2.0']['predicted']:.0f} predicted, "
                     f"{m_needed['|u+z|=2.0']['measured']:.0f} measured"
                     + (f"; FAILED {failures[0]['test']}" if failures else "")))
