"""Worst-case search by gradient ascent: how close to its bound can a statement be pushed?

Every bound of THEOREMS.md is a differentiable function of the tokens, the maps ``W^K, W^V``
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

A check provides targets through a classmethod ``search_targets()`` returning a sequence of
:class:`SearchTarget` (a user's plugin check does the same); :func:`targets_for` finds them,
falling back to the built-in targets of :mod:`verification.adversary_targets` for the checks
that ship with the suite.

Evaluation budget
=================

One *evaluation* is one evaluation of the objective at one point, with or without its
gradient (reverse mode costs a small constant multiple of a value, about 2-4x here): a
search with ``R`` restarts and ``S`` steps makes ``R * S`` evaluations, each step evaluates
every restart once (value and gradient at the current point, which is also scored), so the
best point is always one that was evaluated. The random baseline evaluates the objective at
exactly as many independent draws of ``init`` (values only). The re-measurement of the best
case is not counted (it is the verification, not the search).

Everything is float64: :func:`main` enables x64 (``verification.enable_x64()``); :func:`run_search` refuses to run without it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# ----------------------------------------------------------------------------------------
# Constraint sets: projections and reparametrisations
# ----------------------------------------------------------------------------------------


def project_rows_to_ball(x: jax.Array, radius: float) -> jax.Array:
    """Each row of ``x (n, d)`` scaled into the Euclidean ball ``||x_i|| <= radius`` (the nearest point)."""
    norms = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x * jnp.minimum(1.0, radius / jnp.maximum(norms, jnp.finfo(x.dtype).tiny))


def project_to_ball(x: jax.Array, radius: float) -> jax.Array:
    """``x`` (any shape) scaled into the Frobenius ball ``||x||_F <= radius`` (the nearest point)."""
    norm = jnp.linalg.norm(x.reshape(-1))
    return x * jnp.minimum(1.0, radius / jnp.maximum(norm, jnp.finfo(x.dtype).tiny))


def project_to_spectral_ball(a: jax.Array, radius: float) -> jax.Array:
    """The nearest matrix (in Frobenius norm) with ``||a||_op <= radius``: singular values clipped at ``radius``."""
    u, s, vt = jnp.linalg.svd(a, full_matrices=False)
    return (u * jnp.minimum(s, radius)) @ vt


def project_to_box(x: jax.Array, low: float, high: float) -> jax.Array:
    return jnp.clip(x, low, high)


def project_to_simplex(v: jax.Array) -> jax.Array:
    """The Euclidean projection of ``v (k,)`` onto the probability simplex (sort-based, Duchi et al. 2008)."""
    k = v.shape[-1]
    u = jnp.sort(v)[::-1]
    css = jnp.cumsum(u) - 1.0
    index = jnp.arange(1, k + 1, dtype=v.dtype)
    rho = jnp.sum(u - css / index > 0)
    theta = css[rho - 1] / rho.astype(v.dtype)
    return jnp.maximum(v - theta, 0.0)


def simplex(logits: jax.Array) -> jax.Array:
    """Mixture weights from unconstrained logits (the softmax reparametrisation of the open simplex)."""
    return jax.nn.softmax(logits)


def qr_isometry(a: jax.Array) -> jax.Array:
    """A matrix with orthonormal columns from ``a (n, k)``, ``n >= k``: Q of ``a = QR`` with ``diag(R) > 0``.

    The sign fix makes the map single-valued (and continuous where ``a`` has full rank), so it can
    be used as a reparametrisation of the Stiefel manifold inside a differentiated objective.
    """
    q, r = jnp.linalg.qr(a)
    signs = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(a.dtype)
    return q * signs[None, :]


def cayley(a: jax.Array) -> jax.Array:
    """An orthogonal matrix ``(I - S)^{-1} (I + S)`` from the skew part ``S = (a - a^T)/2`` of ``a (n, n)``."""
    s = 0.5 * (a - a.T)
    eye = jnp.eye(a.shape[0], dtype=a.dtype)
    return jnp.linalg.solve(eye - s, eye + s)


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


def targets_for(check: str | type) -> list[SearchTarget]:
    """The search targets of a check (a registered id or a Check class).

    A check class with a ``search_targets()`` classmethod provides its own (plugins do this); the
    suite's own checks have theirs in :mod:`verification.adversary_targets`.
    """
    from verification import adversary_targets
    from verification.registry import all_checks

    cls = check
    if isinstance(check, str):
        checks = all_checks()
        cls = checks.get(check)
        if cls is None:
            raise ValueError(f"unknown check id {check!r}; known: {', '.join(checks)}")
    provider = getattr(cls, "search_targets", None)
    if provider is not None:
        targets = list(provider())
    else:
        targets = adversary_targets.builtin_targets(cls.id)
    if not targets:
        raise ValueError(f"check {cls.id!r} provides no search targets (define a search_targets() classmethod)")
    for t in targets:
        if not isinstance(t, SearchTarget):
            raise TypeError(f"{cls.id}.search_targets() must return SearchTarget objects, got {type(t).__name__}")
    return targets


def searchable_ids() -> list[str]:
    """Registered check ids that have search targets (built in or through ``search_targets()``)."""
    from verification import adversary_targets
    from verification.registry import all_checks

    return [cid for cid, cls in all_checks().items()
            if hasattr(cls, "search_targets") or cid in adversary_targets.BUILTIN]


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
        from verification.outputs import jsonable

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
    import optax  # here, not at import: verification.api re-exports this module

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


# ----------------------------------------------------------------------------------------
# `iclkd search`
# ----------------------------------------------------------------------------------------


def plot(results: Sequence[SearchResult], path: Path) -> None:
    """Best ratio so far against evaluations, gradient search and random search, one panel per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, r in zip(axes.ravel(), results):
        evals = np.arange(1, r.steps + 1) * r.restarts
        ax.plot(evals, r.trajectory, label="gradient (Adam)")
        ax.plot(evals, r.random_trajectory, label="random", linestyle="--")
        if r.bound is not None:
            ax.axhline(r.bound, color="k", linewidth=0.8)
        finite = [v for v in r.trajectory + r.random_trajectory if math.isfinite(v) and v > 0]
        if finite and max(finite) / min(finite) > 100:
            ax.set_yscale("log")
        ax.set_title(r.target, fontsize=9)
        ax.set_xlabel("evaluations")
        ax.set_ylabel(r.ratio_label, fontsize=8)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    from verification.outputs import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``iclkd search ID [--budget N] [--seed S] [--restarts R] [--json PATH] [--plot PATH] [--list]``."""
    from verification.command import output_file, positive_int, seed

    parser.add_argument("id", nargs="?", help="a check id (all its targets), a target name such as thm-4.2/risk, "
                                              "or 'all'")
    parser.add_argument("--budget", type=positive_int, default=2048,
                        help="objective evaluations per target, gradient steps x restarts (default 2048); the "
                             "random search gets the same number")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--restarts", type=positive_int, default=None, help="parallel restarts (default: the target's)")
    parser.add_argument("--json", type=output_file, metavar="PATH", help="write the results as JSON here")
    parser.add_argument("--plot", type=output_file, metavar="PATH",
                        help="plot best-so-far ratios against evaluations, gradient vs random (PNG)")
    parser.add_argument("--html", type=output_file, metavar="PATH",
                        help="write a self-contained HTML page of the results (a card and a plot per target); an "
                             "iclkd verify --html page in the same folder links to it")
    parser.add_argument("--plugin", action="append", metavar="MODULE_OR_FILE", default=[],
                        help="load checks from a plugin first (repeatable); a check that defines search_targets() "
                             "becomes searchable")
    parser.add_argument("--list", action="store_true", help="list the searchable checks and their targets, then exit")
    from verification.engine import journal

    journal.add_arguments(parser, default="JSON.journal beside --json; none without it")


def resolve(name: str) -> list[SearchTarget]:
    """Targets for a check id, a ``<check id>/<variant>`` target name, or ``all``."""
    if name == "all":
        return [t for cid in searchable_ids() for t in targets_for(cid)]
    check_id, _, variant = name.partition("/")
    targets = targets_for(check_id)
    if variant:
        chosen = [t for t in targets if t.name == name]
        if not chosen:
            raise ValueError(f"check {check_id!r} has no search target {name!r}; it has "
                             f"{', '.join(t.name for t in targets)}")
        return chosen
    return targets


def _row(r: SearchResult) -> str:
    return (f"{r.target:26s} {r.best_ratio:12.6g} {r.random_best_ratio:12.6g} {r.evaluations:8d} "
            f"{r.agreement:9.1e} {r.elapsed_s:7.1f}s  {r.ratio_label}")


def run(args: argparse.Namespace) -> int:
    """Runs the searches that ``args`` selects (see :func:`add_arguments`); prints a table, writes JSON / a plot."""
    from verification.command import CommandError
    from verification.outputs import write_json
    from verification.plugins import PluginError, load_plugin

    for spec in getattr(args, "plugin", None) or []:
        try:
            load_plugin(spec)
        except PluginError as err:
            raise CommandError(f"error: {err}") from None
    if args.list:
        for cid in searchable_ids():
            for t in targets_for(cid):
                print(f"{t.name:26s} {t.description}")
        return 0
    if args.id is None:
        raise CommandError("error: an ID is required (a check id, a target name, or 'all'; --list shows them)")
    if args.budget < 8:
        raise CommandError(f"error: --budget must be >= 8 evaluations, got {args.budget}")
    try:
        targets = resolve(args.id)
    except ValueError as err:
        raise CommandError(f"error: {err}") from None
    def search(target: SearchTarget) -> SearchResult:
        return run_search(target, budget=args.budget, seed=args.seed, restarts=args.restarts)

    def document(results: list[SearchResult]) -> dict:
        return {"id": args.id, "budget": args.budget, "seed": args.seed, "complete": len(results) == len(targets),
                "targets": {r.target: r.to_json() for r in results}}

    def write(results: list[SearchResult]) -> None:
        if args.json:
            write_json(args.json, document(results))

    from verification.engine import journal
    from verification.registry import all_checks

    run_journal = journal.from_args(args, "search", {"budget": args.budget, "seed": args.seed,
                                                     "restarts": args.restarts},
                                    selection={"id": args.id, "plugin": list(dict.fromkeys(args.plugin or []))},
                                    default=journal.beside(args.json), prog="iclkd search")
    checks = all_checks()

    def unit(target: SearchTarget) -> journal.Unit:  # a target's own code: its check's module
        check = checks.get(target.name.partition("/")[0])
        return journal.Unit(f"target/{target.name}", target.name, journal.check_sources(check) if check else ())

    print(f"{'target':26s} {'best ratio':>12s} {'random':>12s} {'evals':>8s} {'agreement':>9s} {'time':>8s}  ratio")
    results = []
    # target j on process j mod N (docs/distributed.md); each has its own key; journaled targets are reused
    with journal.active(run_journal):
        for result in journal.map_units(targets, search, journal=run_journal, unit_of=unit,
                                        decode=journal.decode_as(SearchResult)):
            results.append(result)
            print(_row(result), flush=True)
            write(results)  # rewritten (atomically) after every target: a stopped long run keeps its results
    if args.plot:
        plot(results, args.plot)
    if getattr(args, "html", None):
        from verification.io.html import search_page
        from verification.outputs import write_atomic

        write_atomic(args.html, search_page(document(results)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m verification.adversary ...`` (the same as ``iclkd search ...``); returns the exit status."""
    from verification.command import standalone

    return standalone("iclkd search", sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
