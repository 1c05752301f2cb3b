"""Theorem 3.2's search target (docs/statements.md#thm-3-2), run by ``iclkd search thm-3.2``.

The expected supremum gap ``E sup_{||W||<=B} L - L_N`` over the bound, for a law with ``K`` learnable
atoms (in the unit ball) and weights (softmax), the maps and ``B``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import iclkd_jax as ik
from verification.cases import sup_gap
from verification.oracles import reference
from verification.search.ascent import SearchTarget
from verification.search.objectives import (
    as_arrays,
    as_lists,
    normal,
)
from verification.search.projections import (
    project_rows_to_ball,
    project_to_box,
    project_to_spectral_ball,
    simplex,
)

# ----------------------------------------------------------------------------------------

ATOMS = 6
N_DEMOS = 64
SEARCH_DRAWS = 128      # common random numbers: the same uniforms in every evaluation
REMEASURE_DRAWS = 4000  # fresh draws for the re-measurement
REFERENCE_DRAWS = 50    # of those, compared draw by draw with reference.sup_gap
BALL_RANGE = (0.1, 10.0)


def _law(p):
    """Atoms, weights, features ``phi_p(W^K z_j)``, targets ``W^V z_j`` and the exact sups ``T``, ``C``."""
    pi = simplex(p["logits"])
    phi, t = sup_gap.features_targets(p["atoms"], p["wk"], p["wv"])
    big_t = jnp.max(jnp.linalg.norm(t, axis=1))
    big_c = jnp.max(jnp.linalg.norm(phi, axis=1))
    return pi, phi, t, big_t, big_c


def _bound_32(big_b, big_c, big_t, n=N_DEMOS, delta=sup_gap.DELTA):
    s = big_t + big_b * big_c
    return 4 * big_b * big_c * s / math.sqrt(n) + s**2 * math.sqrt(math.log(1 / delta) / (2 * n))


def _one_gap(phi, t, pop, weights, ball):
    """``sup_{||W|| <= B} L - L_N`` for one draw, with the envelope-theorem gradient.

    The maximiser ``W* = B U*`` is found by the library's exact solver and held fixed
    (``stop_gradient`` on ``U*``): the value is the maximum, and its gradient is Danskin's
    (``d/dtheta max_W f(W; theta) = df/dtheta at W*``, scaled with the ball through ``B``).
    """
    sig, m, c = sup_gap.moments(phi, t, weights)
    d_s, d_m, d_c = pop[0] - sig, pop[1] - m, pop[2] - c
    lam, q = jnp.linalg.eigh(0.5 * (d_s + d_s.T))
    beta = (d_m @ q).reshape(-1)
    sol = ik.max_quadratic_in_eigenbasis(jnp.tile(lam, d_m.shape[0]), beta, ball)
    unit = jax.lax.stop_gradient(sol.coordinates.reshape(d_m.shape) @ q.T / ball)
    w = ball * unit
    return d_c + jnp.sum((w @ d_s) * w) - 2.0 * jnp.sum(w * d_m)


def targets(atoms=ATOMS, n=N_DEMOS, draws=SEARCH_DRAWS) -> list[SearchTarget]:
    d, dk, dv = sup_gap.TOKEN_DIM, sup_gap.KEY_DIM, sup_gap.VALUE_DIM
    draw_key = jax.random.key(32)   # fixed: every evaluation sees the same uniforms

    def init(key):
        ks = jax.random.split(key, 5)
        return {"atoms": normal(ks[0], (atoms, d), 1.0 / math.sqrt(d)), "logits": normal(ks[1], (atoms,)),
                "wk": normal(ks[2], (dk, d), 1.0 / math.sqrt(d)), "wv": normal(ks[3], (dv, d), 1.0 / math.sqrt(d)),
                "log_b": jax.random.uniform(ks[4], (), jnp.float64, -1.0, 1.0)}

    def project(p):
        return {"atoms": project_rows_to_ball(p["atoms"], 1.0), "logits": project_to_box(p["logits"], -8.0, 8.0),
                "wk": project_to_spectral_ball(p["wk"], 1.0), "wv": project_to_spectral_ball(p["wv"], 1.0),
                "log_b": project_to_box(p["log_b"], math.log(BALL_RANGE[0]), math.log(BALL_RANGE[1]))}

    def gaps_and_bound(p):
        """The exact sup gaps of ``draws`` multinomial samples (Gumbel-max from fixed uniforms), ``log p(counts)``,
        and the bound with the exact sups ``T``, ``C`` over the atoms."""
        pi, phi, t, big_t, big_c = _law(p)
        ball = jnp.exp(p["log_b"])
        pop = sup_gap.moments(phi, t, pi)
        idx = jax.random.categorical(draw_key, p["logits"], shape=(draws, n))
        counts = jnp.sum(jax.nn.one_hot(idx, atoms, dtype=phi.dtype), axis=1)
        gaps = jax.vmap(lambda w: _one_gap(phi, t, pop, w, ball))(counts / n)
        return gaps, counts @ jnp.log(pi), _bound_32(ball, big_c, big_t, n)

    def objective_mean(p):
        """``E[G_N] / bound``, E over ``draws`` multinomial samples, with the score-function term for the weights.

        The samples are Gumbel-max draws from fixed uniforms (piecewise constant in the weights), so the
        pathwise gradient misses how the weights move the sample; the score-function term
        ``(G - mean G) d log p(counts)`` adds it (value unchanged: it is zero at the current point).
        """
        gaps, log_p, bound = gaps_and_bound(p)
        centred = jax.lax.stop_gradient(gaps - jnp.mean(gaps))
        surrogate = jnp.mean(gaps) + jnp.mean(centred * (log_p - jax.lax.stop_gradient(log_p)))
        return surrogate / bound

    def objective_quantile(p):
        """The ``(1 - delta)``-quantile of the draws' gaps over the bound (the statement's own quantity).

        Pathwise gradient only (a quantile has no simple score-function term): the weights move it through the
        population moments and the bound, not through the sample.
        """
        gaps, _, bound = gaps_and_bound(p)
        return jnp.quantile(gaps, 1.0 - sup_gap.DELTA) / bound

    def measure(p):
        q = as_arrays(p)
        pi = np.exp(q["logits"] - q["logits"].max())
        pi /= pi.sum()
        ball = math.exp(float(q["log_b"]))
        key = jax.random.key(3232)
        idx = np.asarray(jax.random.choice(key, atoms, (REMEASURE_DRAWS, n), p=jnp.asarray(pi)))
        tokens = np.zeros((REMEASURE_DRAWS, sup_gap.N_MAX, d))
        tokens[:, :n] = q["atoms"][idx]
        wk, wv = jnp.asarray(q["wk"]), jnp.asarray(q["wv"])
        phi, t = sup_gap.features_targets(jnp.asarray(q["atoms"]), wk, wv)
        sig, m, c = sup_gap.moments(phi, t, jnp.asarray(pi))
        pop = sup_gap.Population(sig, m, c, 0.0, f"exact ({atoms} atoms)")
        res = sup_gap.sup_gaps(jnp.asarray(tokens), jax.random.fold_in(key, 1), sup_gap.demo_weights(n), wk, wv,
                               pop, ball)
        big_t = float(np.max(np.linalg.norm(np.asarray(t), axis=1)))
        big_c = float(np.max(np.linalg.norm(np.asarray(phi), axis=1)))
        bound = float(sup_gap.theorem_bound(ball, big_c, big_t, n))
        gaps = res.gap
        # the independent reference on the first draws: NumPy Taylor features, moments and the dual solver
        ref_phi = reference.taylor_features(q["atoms"] @ q["wk"].T, sup_gap.ORDER)
        ref_t = q["atoms"] @ q["wv"].T
        ref_pop = reference.kd_moments(ref_phi, ref_t, pi)
        ref_gaps = []
        for row in idx[:REFERENCE_DRAWS]:
            w = np.bincount(row, minlength=atoms) / n
            ref_gaps.append(float(reference.sup_gap(ref_pop, reference.kd_moments(ref_phi, ref_t, w), ball)))
        ref_gaps = np.asarray(ref_gaps)
        scale = np.maximum(np.abs(ref_gaps), 1e-300)
        mean = float(gaps.mean())
        return {"mean_ratio": mean / bound, "mean_ratio_standard_error": float(gaps.std(ddof=1) / math.sqrt(gaps.size)) / bound,
                "quantile_ratio": float(np.quantile(gaps, 1 - sup_gap.DELTA)) / bound,
                "max_ratio": float(gaps.max()) / bound, "violations": int(np.sum(gaps > bound)),
                "draws": int(gaps.size), "bound": bound, "T": big_t, "C": big_c, "B": ball, "N": n,
                "weights": pi.tolist(),
                "reference_max_relative_difference": float(np.max(np.abs(gaps[:REFERENCE_DRAWS] - ref_gaps) / scale)),
                "solver_guard_ok": bool(np.all(res.probe <= gaps + 64 * np.finfo(np.float64).eps * (1 + res.scale))),
                "measured_by": "verification.cases.sup_gap.sup_gaps on fresh draws (first draws against reference.sup_gap)"}

    def describe(p):
        out = as_lists(p)
        out["weights"] = np.asarray(simplex(jnp.asarray(p["logits"]))).tolist()
        out["B"] = math.exp(float(p["log_b"]))
        out["N"] = n
        out["delta"] = sup_gap.DELTA
        return out

    law = (f"a law on {atoms} learnable atoms (unit ball) and weights, W^K, W^V (||.||_op <= 1), B; N = {n}, "
           f"Taylor order {sup_gap.ORDER}")
    return [
        SearchTarget(name="thm-3.2/mean", description=f"E sup_(||W||<=B) [L - L_N] / bound for {law}",
                     init=init, objective=objective_mean, project=project,
                     remeasure=lambda p: (lambda m: {"ratio": m["mean_ratio"], **m})(measure(p)),
                     describe=describe, ratio_label="E[sup gap] / bound", learning_rate=0.05, restarts=8),
        SearchTarget(name="thm-3.2/quantile",
                     description=f"(1-delta)-quantile of sup_(||W||<=B) [L - L_N] / bound for {law}",
                     init=init, objective=objective_quantile, project=project,
                     remeasure=lambda p: (lambda m: {"ratio": m["quantile_ratio"], **m})(measure(p)),
                     describe=describe, ratio_label="95% quantile of sup gap / bound", learning_rate=0.05,
                     restarts=8),
    ]
