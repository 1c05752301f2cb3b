"""The feature-map lemma's search targets (docs/statements.md#lemma-features), ``iclkd search lemma-features``.

``lemma-features/{positive,orthogonal,trig}``: the relative RMS error of ``<phi(u), phi(z)>`` against
``exp(u.z)`` at ``m = 64`` features, over ``||u||, ||z|| <= 1``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

import iclkd_jax as ik
from verification.oracles.feature_variance import per_feature_variance
from verification.search.ascent import SearchTarget
from verification.search.objectives import (
    as_lists,
    normal,
)
from verification.search.projections import (
    project_to_ball,
)
from verification.statements.lemma_features.check import KEY_DIM, M_GRID, estimates_under_test

# ----------------------------------------------------------------------------------------

FEATURES = 64
SEARCH_MAPS = 2048       # fixed draws in the search objective (a Monte Carlo objective: more maps, less overfitting)
REMEASURE_KEYS = 8192    # fresh draws in the re-measurement
#: ||u||, ||z|| <= 0.5, so |u + z| <= 1: where the check judges the variance (beyond it the lognormal
#: features' fourth moment makes a Monte Carlo RMS unreliable at these sample sizes)
FEATURE_RADIUS = 0.5


def targets(num_features=FEATURES, maps=SEARCH_MAPS) -> list[SearchTarget]:

    column = M_GRID.index(num_features)
    targets = []
    for kind in ("positive", "orthogonal", "trig"):
        map_kind = "trig" if kind == "trig" else "positive"

        @functools.cache
        def draws(kind=kind):
            """The search's fixed maps ``(omega (maps, m, d_k), offset (maps, m))``, drawn by the library on first use."""
            def one(key):
                if kind == "trig":
                    fm = ik.trig_random_features(key, num_features, key_dim=KEY_DIM)
                    return fm.omega, fm.offset
                fm = ik.positive_random_features(key, num_features, key_dim=KEY_DIM, orthogonal=kind == "orthogonal")
                return fm.omega, jnp.zeros((num_features,), fm.omega.dtype)

            # concrete arrays even when first called while an objective is being traced (then cached)
            with jax.ensure_compile_time_eval():
                return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(64), maps))

        def rms(p, draws=draws, map_kind=map_kind):
            u, z = p["u"][None, :], p["z"][None, :]
            omega, offset = draws()

            def estimate(om, off):
                fm = ik.FeatureMap(map_kind, key_dim=KEY_DIM, omega=om, offset=off if map_kind == "trig" else None)
                return jnp.sum(fm(u) * fm(z))

            rel = jax.vmap(estimate)(omega, offset) * jnp.exp(-jnp.sum(p["u"] * p["z"])) - 1.0
            return jnp.sqrt(jnp.mean(rel * rel))

        def remeasure(p, kind=kind):
            u, z = np.asarray(p["u"])[None, :], np.asarray(p["z"])[None, :]
            fresh = jax.random.split(jax.random.key(6464), REMEASURE_KEYS)
            est = estimates_under_test(fresh, u, z, kind, None)[:, column, 0]
            rel = est / math.exp(float(np.sum(u * z))) - 1.0
            mse = float(np.mean(rel * rel))
            # standard error of the RMS by the delta method on the mean square
            se = float(np.std(rel * rel, ddof=1) / math.sqrt(rel.size)) / (2 * math.sqrt(mse))
            predicted = math.sqrt(float(per_feature_variance("positive" if kind == "orthogonal" else kind, u, z)[0])
                                  / num_features)
            # the formula's supremum over the ball: |u + z| = 2R (u = z) or |u - z| = 2R (u = -z)
            r2 = (2 * FEATURE_RADIUS) ** 2
            sup_var = math.exp(r2) - 1 + (0.5 * math.exp(-r2) if kind == "trig" else 0.0)
            return {"ratio": math.sqrt(mse), "standard_error": se, "keys": REMEASURE_KEYS, "m": num_features,
                    "predicted_iid_rms": predicted, "measured_over_predicted": math.sqrt(mse) / predicted,
                    "formula_sup_rms": math.sqrt(sup_var / num_features),
                    "norm_u_plus_z": float(np.linalg.norm(u + z)), "norm_u_minus_z": float(np.linalg.norm(u - z)),
                    "measured_by": "verification.statements.lemma_features.check.estimates_under_test (fresh keys); "
                                   "prediction from verification.oracles.feature_variance"}

        def init(key):
            ku, kz = jax.random.split(key)
            return {"u": normal(ku, (KEY_DIM,), 0.5), "z": normal(kz, (KEY_DIM,), 0.5)}

        def project(p):
            return {"u": project_to_ball(p["u"], FEATURE_RADIUS), "z": project_to_ball(p["z"], FEATURE_RADIUS)}

        targets.append(SearchTarget(
            name=f"lemma-features/{kind}",
            description=f"relative RMS error of <phi(u), phi({'z'})> vs exp(u.z), {kind} features, m = {num_features},"
                        f" ||u||, ||z|| <= {FEATURE_RADIUS} ({maps} fixed maps in the search, fresh ones re-measure)",
            init=init, objective=rms, project=project, remeasure=remeasure, describe=as_lists,
            ratio_label=f"relative RMS error (m={num_features})", bound=None, learning_rate=0.05, restarts=8))
    return targets
