"""The search driver: which checks offer search targets, which targets a name selects, and running them
(one process, or target ``j`` on process ``j mod N``), plus the plot of ``iclkd search --plot``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from verification.core import protocol
from verification.core.model import Check
from verification.core.outputs import atomic_path
from verification.core.process import process_count
from verification.engine.distributed import distributed_map
from verification.engine.plugins import all_checks
from verification.search.ascent import SearchResult, SearchTarget, run_search


def targets_for(check: str | type[Check]) -> list[SearchTarget]:
    """The search targets of a check (a registered id or a Check class): its ``search_targets`` hook.

    Raises:
      ValueError: an unknown id, or a check that does not offer the hook (reported as not offered) or
        offers no target.
      TypeError: the hook returned something other than :class:`SearchTarget` objects.
    """
    cls = check
    if isinstance(check, str):
        checks = all_checks()
        cls = checks.get(check)
        if cls is None:
            raise ValueError(f"unknown check id {check!r}; known: {', '.join(checks)}")
    if not protocol.offers(cls, "search_targets"):
        raise ValueError(f"{protocol.not_offered(cls, 'search_targets')}; searchable: {', '.join(searchable_ids())}")
    targets = list(cls.search_targets())
    if not targets:
        raise ValueError(f"check {cls.id!r} offers no search target (its search_targets() returned none)")
    for t in targets:
        if not isinstance(t, SearchTarget):
            raise TypeError(f"{cls.id}.search_targets() must return SearchTarget objects, got {type(t).__name__}")
    return targets


def searchable_ids() -> list[str]:
    """Registered check ids that offer the ``search_targets`` hook."""
    return [cid for cid, cls in all_checks().items() if protocol.offers(cls, "search_targets")]


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


def search_all(targets: Sequence[SearchTarget], *, budget: int, seed: int, restarts: int | None = None,
               on_result: Callable[[list[SearchResult]], None] | None = None) -> list[SearchResult]:
    """:func:`run_search` of every target; with several processes target ``j`` runs on process ``j mod N``
    (each has its own key, so the results are those of one process). ``on_result(results so far)`` is called
    after each target (one process) or once at the end (several)."""

    def search(target: SearchTarget) -> SearchResult:
        return run_search(target, budget=budget, seed=seed, restarts=restarts)

    if process_count() > 1:
        results = distributed_map(search, list(targets))
        if on_result is not None:
            on_result(results)
        return results
    results = []
    for target in targets:
        results.append(search(target))
        if on_result is not None:
            on_result(results)
    return results


def plot(results: Sequence[SearchResult], path: Path) -> None:
    """Best ratio so far against evaluations, gradient search and random search, one panel per target."""
    import matplotlib  # here: matplotlib is optional (the plots extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, r in zip(axes.ravel(), results, strict=False):
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
