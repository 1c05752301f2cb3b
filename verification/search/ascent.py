"""Worst-case search by gradient ascent: how close to its bound can a statement be pushed?

Every bound of docs/statements.md is a differentiable function of the tokens, the maps ``W^K, W^V``
and the distribution's parameters, so its worst case can be *searched for*: maximise the
ratio ``observed / bound`` (or a conjecture's ratio) by gradient ascent over the constrained
inputs, from many random restarts at once, and compare with random search at the same
number of evaluations.

The protocol: a :class:`SearchTarget`
=====================================

A target bundles five pure functions of one restart's parameters ``params`` (any pytree of
float64 arrays):

* ``init(key) -> params``: a random starting point (also the random-search baseline's
  distribution: the baseline draws its points from ``init`` too);
* ``objective(params) -> ratio``: the scalar to maximise (traceable, differentiable almost
  everywhere); the optimiser ascends ``log ratio`` (``log_objective`` when the target provides a
  numerically safer one), because ratios span orders of magnitude;
* ``project(params) -> params``: the map onto the constraint set, applied after every step
  (norm balls, spectral balls, boxes; simplices and isometries are better written as
  reparametrisations inside ``objective``: :func:`simplex` and :func:`qr_isometry`/:func:`cayley`);
* ``remeasure(params) -> dict``: the check's own measurement of the same case (NumPy/float64,
  not traced), returning at least ``{"ratio": float}``; this, not the search's objective, is the
  ``best_ratio`` reported, and the two must agree (``agreement``);
* ``describe(params) -> dict``: the exact inputs of a case as JSON (nested lists / floats).

A check offers targets through its ``search_targets`` hook (:mod:`verification.core.protocol`)
returning a sequence of :class:`SearchTarget`; built-in statements and plugins alike
(:func:`verification.engine.search.targets_for` finds them).

Evaluation budget
=================

One *evaluation* is one evaluation of the objective at one point, with or without its
gradient (reverse mode costs a small constant multiple of a value, about 2-4x here): a
search with ``R`` restarts and ``S`` steps makes ``R * S`` evaluations, each step evaluates
every restart once (value and gradient at the current point, which is also scored), so the
best point is always one that was evaluated. The random baseline evaluates the objective at
exactly as many independent draws of ``init`` (values only). The re-measurement of the best
case is not counted (it is the verification, not the search).

Everything is float64: the ``iclkd`` entry point enables x64 (``verification.enable_x64()``); :func:`run_search` refuses to
run without it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from verification.core.outputs import jsonable

# ----------------------------------------------------------------------------------------
# The protocol
# ----------------------------------------------------------------------------------------


def _identity(params):
    return params


@dataclasses.dataclass(frozen=True)
class SearchTarget:
    """One objective a check offers to :func:`run_search`; see the module docstring.

    Attributes:
      name: unique, ``"<check id>"`` or ``"<check id>/<variant>"`` (e.g. ``"thm-4.2/risk"``).
      description: what the ratio is, in one line.
      init, objective, project, remeasure, describe: see the module docstring.
      log_objective: optional ``log`` of ``objective``, computed in a numerically safer way.
      ratio_label: what the ratio is (``"observed / bound"``, ``"c_hat"``, ...).
      bound: the value the ratio may not exceed where the statement is a bound (1.0), else None.
      learning_rate: Adam's initial step (cosine-decayed to 1 % over the run).
      restarts: the default number of parallel restarts.
    """

    name: str
    description: str
    init: Callable[[jax.Array], Any]
    objective: Callable[[Any], jax.Array]
    remeasure: Callable[[Any], dict]
    describe: Callable[[Any], dict]
    project: Callable[[Any], Any] = _identity
    log_objective: Callable[[Any], jax.Array] | None = None
    ratio_label: str = "observed / bound"
    bound: float | None = 1.0
    learning_rate: float = 0.05
    restarts: int = 16

    def log_ratio(self, params) -> jax.Array:
        if self.log_objective is not None:
            return self.log_objective(params)
        ratio = self.objective(params)
        return jnp.log(jnp.maximum(ratio, jnp.finfo(ratio.dtype).tiny))


# ----------------------------------------------------------------------------------------
# The search
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class SearchResult:
    """What :func:`run_search` found for one target.

    Attributes:
      target: the target's name; ``ratio_label``, ``bound``: as in the target.
      best_ratio: the best case's ratio RE-MEASURED by the check's own measurement.
      objective_ratio: the search's own objective at that case (``agreement`` = their relative difference).
      best_case: the exact inputs (``target.describe``), ``remeasured``: everything the check measured.
      evaluations: objective evaluations spent (restarts x steps; see the module docstring).
      random_best_ratio: the best objective value of random search over ``evaluations`` draws of ``init``,
        ``random_remeasured``: its best case re-measured by the check.
      trajectory: the best objective so far after each step (over all restarts), ``random_trajectory``:
        the random search's best so far after the same numbers of evaluations.
    """

    target: str
    description: str
    ratio_label: str
    bound: float | None
    best_ratio: float
    objective_ratio: float
    agreement: float
    best_case: dict
    remeasured: dict
    evaluations: int
    restarts: int
    steps: int
    random_best_ratio: float
    random_remeasured: dict
    trajectory: list[float]
    random_trajectory: list[float]
    final_ratios: list[float]
    seed: int
    elapsed_s: float

    def to_json(self) -> dict:
        # without elapsed_s: the same seed writes the same file
        return jsonable({k: v for k, v in dataclasses.asdict(self).items() if k != "elapsed_s"})


def _require_x64() -> None:
    if jax.dtypes.canonicalize_dtype(np.float64) != np.float64:
        raise RuntimeError("the worst-case search runs in float64: call jax.config.update('jax_enable_x64', True) "
                           "first (the iclkd entry points do)")


def split_budget(budget: int, restarts: int) -> tuple[int, int]:
    """``(restarts, steps)`` with ``restarts * steps <= budget``, at least 8 steps per restart."""
    if budget < 8:
        raise ValueError(f"budget must be >= 8 evaluations, got {budget}")
    restarts = max(1, min(restarts, budget // 8))
    return restarts, budget // restarts


def _safe(value):
    return jnp.where(jnp.isfinite(value), value, -jnp.inf)


@functools.lru_cache(maxsize=64)
def _ascent_program(target: SearchTarget, restarts: int, steps: int):
    """The compiled gradient search of one target: ``key -> (best log ratios, best params, trajectory)``.

    Cached per (target, restarts, steps): a second search of the same target reuses the compilation.
    """
    schedule = optax.cosine_decay_schedule(target.learning_rate, steps, alpha=0.01)
    optimizer = optax.adam(schedule)

    @jax.jit
    def run(key):
        params = jax.vmap(lambda k: target.project(target.init(k)))(jax.random.split(key, restarts))
        value_and_grad = jax.vmap(jax.value_and_grad(target.log_ratio))
        opt_state = jax.vmap(optimizer.init)(params)
        best_value = jnp.full((restarts,), -jnp.inf)

        def step(carry, _):
            params, opt_state, best_value, best_params = carry
            value, grad = value_and_grad(params)
            value = _safe(value)
            better = value > best_value
            best_params = jax.tree_util.tree_map(
                lambda new, old: jnp.where(better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
                params, best_params)
            best_value = jnp.where(better, value, best_value)
            # ascent: Adam minimises, so it is given -grad; a non-finite gradient moves nothing
            grad = jax.tree_util.tree_map(lambda g: jnp.where(jnp.isfinite(g), -g, 0.0), grad)
            updates, opt_state = jax.vmap(optimizer.update)(grad, opt_state, params)
            params = jax.vmap(target.project)(optax.apply_updates(params, updates))
            return (params, opt_state, best_value, best_params), jnp.max(best_value)

        carry, trajectory = jax.lax.scan(step, (params, opt_state, best_value, params), None, length=steps)
        return carry[2], carry[3], trajectory

    return run


@functools.lru_cache(maxsize=64)
def _scoring_program(target: SearchTarget):
    """``keys -> log ratios`` of independent draws of ``init`` (projected), compiled once per target and chunk."""

    draw = jax.jit(lambda k: target.project(target.init(k)))

    @jax.jit
    def score(keys):
        return _safe(jax.vmap(target.log_ratio)(jax.vmap(draw)(keys)))

    return score, draw


#: draws scored per compiled call of the random baseline
CHUNK = 512


def random_sample(target: SearchTarget, key, count: int):
    """``count`` independent draws of ``init`` scored by the objective: ``(log ratios, the best draw)``."""
    score, draw = _scoring_program(target)
    keys = jax.random.split(key, count)
    chunk = min(CHUNK, count)
    padded = -(-count // chunk) * chunk
    all_keys = keys[jnp.arange(padded) % count]  # the last chunk padded with repeats (then cut off)
    values = np.concatenate([np.asarray(score(all_keys[i:i + chunk])) for i in range(0, padded, chunk)])[:count]
    best = int(np.argmax(values))
    return values, draw(keys[best])


def _first(tree, index):
    return jax.tree_util.tree_map(lambda leaf: leaf[index], tree)


def _exp(log_value: float) -> float:
    return math.exp(log_value) if log_value < 709.0 else math.inf


def run_search(target: SearchTarget, *, budget: int = 2048, seed: int = 0, restarts: int | None = None) -> SearchResult:
    """Maximises ``target``'s ratio with Adam from ``restarts`` random starts (vmapped) within ``budget``.

    Args:
      target: the :class:`SearchTarget`.
      budget: objective evaluations (see the module docstring); the random baseline gets the same number.
      seed: every draw (starts, baseline) comes from ``jax.random.key(seed)``: same seed, same result.
      restarts: parallel restarts (default: the target's); the steps are ``budget // restarts``.

    Returns:
      A :class:`SearchResult` whose ``best_ratio`` is the check's re-measurement of the best case.
    """
    _require_x64()
    start = time.perf_counter()
    restarts, steps = split_budget(int(budget), int(restarts or target.restarts))
    evaluations = restarts * steps
    key = jax.random.key(seed)
    best_values, best_params, trajectory = _ascent_program(target, restarts, steps)(jax.random.fold_in(key, 0))
    best_values = np.asarray(best_values)
    index = int(np.argmax(best_values))
    best = _first(best_params, index)
    remeasured = target.remeasure(best)
    objective_ratio = _exp(float(best_values[index]))
    ratio = float(remeasured["ratio"])
    random_values, random_best = random_sample(target, jax.random.fold_in(key, 1), evaluations)
    random_remeasured = target.remeasure(random_best)
    running = np.maximum.accumulate(random_values)
    random_trajectory = [_exp(float(running[min(evaluations, (s + 1) * restarts) - 1])) for s in range(steps)]
    agreement = (abs(ratio - objective_ratio) / max(abs(ratio), 1e-300)
                 if math.isfinite(ratio) and math.isfinite(objective_ratio) else (0.0 if ratio == objective_ratio else math.inf))
    return SearchResult(
        target=target.name, description=target.description, ratio_label=target.ratio_label, bound=target.bound,
        best_ratio=ratio, objective_ratio=objective_ratio, agreement=agreement, best_case=target.describe(best),
        remeasured=remeasured, evaluations=evaluations, restarts=restarts, steps=steps,
        random_best_ratio=float(random_remeasured["ratio"]), random_remeasured=random_remeasured,
        trajectory=[_exp(float(v)) for v in np.asarray(trajectory)], random_trajectory=random_trajectory,
        final_ratios=[_exp(float(v)) for v in best_values], seed=seed, elapsed_s=time.perf_counter() - start)
