"""``iclkd bench false-alarms --seeds A..B --profile P``: how close each check comes to a false alarm.

The library is assumed correct here (it is the one under test everywhere else): every ``violated``
and every ``error`` over a sweep of seeds is then a false alarm of the suite, and every
``inconclusive`` a verdict it could not give. The sweep runs every selected check at every seed and
reports, per check, the count of each status and its **margin**:

    margin = max over seeds s of  max over components c of  q_c(s) / threshold_c,

where a component is one judged quantity ``q_c`` of the check (an error, a growth exponent's
deviation, a confidence limit) and ``threshold_c`` the value past which the check says
``violated``. A margin below 1 means no seed came closer than that fraction of the way to a false
alarm; above 1 is a violation. Each check's ``false_alarm_margin`` hook (verification.core.protocol,
in its statement's folder) says which quantities the margin is made of and what it does not measure
(pass/fail judgements that report no number); a check that does not offer the hook (a plugin) uses
``worst / tolerance`` of its :class:`~verification.core.model.CheckResult`, and its meaning says so.
A non-finite component (NaN or infinity) makes the margin infinite and is named in the report.

Efficiency: the checks compile their programs once per process and per shape, and every seed of a
profile uses the same shapes, so all the seeds of one process run in that process (the first seed
pays the compilation, the others reuse it). ``--jobs J`` runs J worker processes, each taking the
next seed when it finishes one; under ``iclkd launch -n N`` seed ``j`` runs on process ``j mod N``
(:func:`verification.engine.distributed.distributed_map`) and the JSON report is the one-process report
(timing fields aside). The JSON report is rewritten atomically after every seed (``complete:
false`` until the end), so a long sweep that is stopped keeps what it measured.

Cases that a check's generator rejects instead of judging (outside the statement's or float64's range,
counted by reason in the check's figures) are summed per check and reason: a sweep with no alarm but
many rejections would be hiding them.

Exit status: 0 no ``violated`` and no ``error``; 1 a check was violated at some seed; 3 a check
raised (``error``) at some seed and none was violated; 130 interrupted by Ctrl-C or SIGTERM (the partial
JSON stays).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from verification.core.margins import worst_over_tolerance
from verification.core.protocol import Margin, offers

#: the statuses that are false alarms when the library is correct, and the one that is no verdict
ALARMS = ("violated", "error")
INCONCLUSIVE = "inconclusive"


# ------------------------------------------------------------------------------------------- margins

#: the margin of a check that does not offer the ``false_alarm_margin`` hook
GENERIC_MARGIN = Margin("worst/tolerance of the check's result (not offered: the check does not implement the "
                        "false_alarm_margin hook of verification.core.protocol).", worst_over_tolerance)


def margin_of(check_id: str) -> Margin:
    """The check's ``false_alarm_margin`` hook (verification.core.protocol), else :data:`GENERIC_MARGIN`."""
    from verification.engine.plugins import all_checks

    cls = all_checks().get(check_id)
    return cls.false_alarm_margin if cls is not None and offers(cls, "false_alarm_margin") else GENERIC_MARGIN


def rejected_counts(figures: Any) -> dict[str, int]:
    """The cases a check's generator rejected instead of judging, by reason: every ``rejected_*`` mapping
    ``{reason: count}`` anywhere in the figures (``rejected_cases``, a growth family's ``rejected_draws``), summed."""
    counts: dict[str, int] = {}

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(key, str) and key.startswith("rejected") and isinstance(item, Mapping):
                    for reason, n in item.items():
                        if isinstance(n, int | float) and not isinstance(n, bool):
                            counts[str(reason)] = counts.get(str(reason), 0) + int(n)
                else:
                    walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(figures)
    return counts


def record(result) -> dict[str, Any]:
    """One check at one seed, as the sweep keeps it: status, margin and its components.

    ``margin`` is the largest component (infinite when one is NaN or infinite, named in ``nonfinite``),
    None when the result carries none of them (a check that raised); ``rejected``: :func:`rejected_counts`.
    """
    components = margin_of(result.id)(result) if result.status != "error" else {}
    nonfinite = [name for name, value in components.items() if not math.isfinite(value)]
    margin = math.inf if nonfinite else max(components.values(), default=None)
    component = nonfinite[0] if nonfinite else (max(components, key=components.get) if components else None)
    row = {"id": result.id, "kind": result.kind, "status": result.status, "margin": margin,
           "margin_component": component, "components": components, "nonfinite": nonfinite,
           "worst": result.worst, "worst_label": result.worst_label, "tolerance": result.tolerance,
           "rejected": rejected_counts(result.figures), "elapsed_s": round(result.elapsed_s, 3)}
    if result.status in (*ALARMS, INCONCLUSIVE):
        row["summary"] = result.summary
    return row


# ------------------------------------------------------------------------------------------- the sweep


def run_seed(seed: int, ids: Sequence[str], profile: str) -> dict[str, Any]:
    """Every check of ``ids`` at ``seed``: ``{"seed", "elapsed_s", "runs": [record, ...]}``."""
    from verification.engine import runner

    start = time.perf_counter()
    runs = [record(runner.run_check(cid, profile=profile, seed=seed)) for cid in ids]
    return {"seed": seed, "elapsed_s": round(time.perf_counter() - start, 3), "runs": runs}


def aggregate(seed_runs: Iterable[Mapping[str, Any]], ids: Sequence[str] | None = None) -> dict[str, dict]:
    """Per check: runs, the count of every status, the seeds of each alarm and inconclusive, the margin
    (with its seed and component), each component's own largest value and seed, and the cases the
    generator rejected (by reason, summed over the seeds).

    The margin is the largest over seeds; ties go to the smallest seed (the result does not depend on
    the order in which seeds finished). ``violated_outside_margin`` lists the seeds where the check was
    violated although its margin stayed <= 1: a judgement the margin does not measure failed.
    """
    per_check: dict[str, dict] = {}
    for cid in ids or ():
        per_check[cid] = _empty_entry(cid, None)
    for seed_run in sorted(seed_runs, key=lambda s: s["seed"]):
        for run in seed_run["runs"]:
            entry = per_check.get(run["id"]) or per_check.setdefault(run["id"], _empty_entry(run["id"], run["kind"]))
            entry["kind"] = entry["kind"] or run["kind"]
            entry["runs"] += 1
            entry["counts"][run["status"]] = entry["counts"].get(run["status"], 0) + 1
            if run["status"] in entry["seeds"]:
                entry["seeds"][run["status"]].append(seed_run["seed"])
            margin = run["margin"]
            if margin is not None and (entry["margin"] is None or margin > entry["margin"]):
                entry.update(margin=margin, margin_seed=seed_run["seed"], margin_component=run["margin_component"])
            for name, value in run["components"].items():
                value = math.inf if not math.isfinite(value) else value
                best = entry["components"].get(name)
                if best is None or value > best["margin"]:
                    entry["components"][name] = {"margin": value, "seed": seed_run["seed"]}
            for reason, n in run.get("rejected", {}).items():
                entry["rejected"][reason] = entry["rejected"].get(reason, 0) + n
            if run["status"] == "violated" and (margin is None or margin <= 1.0):
                entry["violated_outside_margin"].append(seed_run["seed"])
    return per_check


def _empty_entry(cid: str, kind: str | None) -> dict[str, Any]:
    return {"kind": kind, "runs": 0, "counts": {}, "seeds": {s: [] for s in (*ALARMS, INCONCLUSIVE)},
            "margin": None, "margin_seed": None, "margin_component": None, "margin_meaning": margin_of(cid).meaning,
            "components": {}, "rejected": {}, "violated_outside_margin": []}


def format_seeds(seeds: Iterable[int]) -> str:
    """``0..3,7``: the seeds as ranges (the syntax ``--seeds`` reads)."""
    parts, run = [], []
    for s in sorted(set(seeds)):
        if run and s != run[-1] + 1:
            parts.append(_span(run))
            run = []
        run.append(s)
    if run:
        parts.append(_span(run))
    return ",".join(parts)


def _span(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}..{run[-1]}"


def build_report(seed_runs: list[dict], *, profile: str, seeds: Sequence[int], ids: Sequence[str],
                 commit: str, elapsed_s: float | None) -> dict[str, Any]:
    """The JSON report; ``complete`` once every seed is in (``elapsed_s`` None before)."""
    from verification.io.report import environment

    seed_runs = sorted(seed_runs, key=lambda s: s["seed"])
    per_check = aggregate(seed_runs, ids)
    return {"benchmark": "false-alarms", "profile": profile, "seeds": format_seeds(seeds), "seed_count": len(seeds),
            "seeds_done": format_seeds(s["seed"] for s in seed_runs), "complete": elapsed_s is not None,
            "checks": list(ids), "commit": commit, "versions": environment(),
            "violated": sum(c["counts"].get("violated", 0) for c in per_check.values()),
            "error": sum(c["counts"].get("error", 0) for c in per_check.values()),
            "inconclusive": sum(c["counts"].get(INCONCLUSIVE, 0) for c in per_check.values()),
            "per_check": per_check, "seed_runs": seed_runs, "elapsed_s": elapsed_s}


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.3g}"
    return f"{value:.6g}" if value != 1 and float(text) == 1 else text  # 0.99998 is not shown as 1


def _component_line(entry: Mapping[str, Any]) -> str:
    return "; ".join(f"{name} {_fmt(c['margin'])} (seed {c['seed']})" for name, c in entry["components"].items())


def _verdicts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{status} {n}" for status, n in counts.items() if status not in (*ALARMS, INCONCLUSIVE)) or "-"


TABLE_HEADER = ("check", "kind", "seeds", "violated", "error", "inconclusive", "verdicts", "margin", "at seed",
                "from", "rejected")


def table_rows(report: Mapping[str, Any]) -> list[tuple[str, ...]]:
    return [(cid, c["kind"] or "-", str(c["runs"]), str(c["counts"].get("violated", 0)),
             str(c["counts"].get("error", 0)), str(c["counts"].get(INCONCLUSIVE, 0)), _verdicts(c["counts"]),
             _fmt(c["margin"]), "-" if c["margin_seed"] is None else str(c["margin_seed"]),
             c["margin_component"] or "-", str(sum(c["rejected"].values())))
            for cid, c in report["per_check"].items()]


def _alarm_lines(report: Mapping[str, Any]) -> list[str]:
    lines = []
    for seed_run in report["seed_runs"]:
        for run in seed_run["runs"]:
            if run["status"] in (*ALARMS, INCONCLUSIVE):
                lines.append(f"seed {seed_run['seed']} {run['id']} {run['status']}: {run.get('summary', '')}")
    return lines


def headline(report: Mapping[str, Any]) -> str:
    state = "" if report["complete"] else f" (partial: seeds {report['seeds_done'] or 'none'} done)"
    return (f"False-alarm sweep: profile {report['profile']}, seeds {report['seeds']} ({report['seed_count']} "
            f"seeds), commit {report['commit']}{state}: {report['violated']} violated, {report['error']} error, "
            f"{report['inconclusive']} inconclusive")


def table(report: Mapping[str, Any]) -> str:
    """The console table, the meaning of each margin and every alarm with its summary."""
    body = table_rows(report)
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(TABLE_HEADER)]
    out = [headline(report), "", "  ".join(h.ljust(w) for h, w in zip(TABLE_HEADER, widths, strict=False)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) for row in body]
    out += ["", "margin = the largest, over the seeds, judged quantity / its violation threshold (> 1 is a violation):"]
    for cid, c in report["per_check"].items():
        out.append(f"  {cid}: {c['margin_meaning']}")
        if len(c["components"]) > 1:
            out.append(f"    components: {_component_line(c)}")
    rejected = [f"{cid}: " + ", ".join(f"{n} {reason}" for reason, n in c["rejected"].items())
                for cid, c in report["per_check"].items() if any(c["rejected"].values())]
    if rejected:
        out.append("rejected by the generator (not judged), over every seed: " + "; ".join(rejected))
    outside = [f"{cid} at seed(s) {format_seeds(c['violated_outside_margin'])}"
               for cid, c in report["per_check"].items() if c["violated_outside_margin"]]
    if outside:
        out.append("violated by a judgement the margin does not measure: " + "; ".join(outside))
    alarms = _alarm_lines(report)
    if alarms:
        out += ["", *alarms]
    return "\n".join(out)


def markdown(report: Mapping[str, Any]) -> str:
    """A Markdown table for the README and docs/theorems.md, with the meaning of each margin."""
    out = [headline(report) + ".", "", "| " + " | ".join(TABLE_HEADER) + " |", "|" + " --- |" * len(TABLE_HEADER)]
    out += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    out += ["", "Margin: the largest, over the seeds, judged quantity / its violation threshold (> 1 is a violation).",
            ""]
    out += [f"- **{cid}**: {c['margin_meaning']}" + (f" Components: {_component_line(c)}." if len(c["components"]) > 1
                                                     else "") for cid, c in report["per_check"].items()]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------- processes


def _worker_init(cache_dir: str | None, min_compile_s: float) -> None:
    """A ``--jobs`` worker: float64 on and the parent's persistent compilation cache (spawn copies neither)."""
    import jax

    from verification import enable_x64

    enable_x64()
    if cache_dir:
        try:
            jax.config.update("jax_compilation_cache_dir", cache_dir)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_s)
        except Exception:  # noqa: BLE001 - an unwritable cache or an old JAX must never stop the sweep
            pass


def sweep(seeds: Sequence[int], ids: Sequence[str], profile: str, *, jobs: int = 1,
          on_seed: Callable[[dict], None] | None = None) -> list[dict]:
    """Every check at every seed, in one process (``jobs=1``), ``jobs`` worker processes, or over the
    processes of ``iclkd launch``; ``on_seed(seed_run)`` as each seed finishes (in this process).

    Returns the seed runs in seed order.
    """
    from verification.engine import distributed

    if distributed.process_count() > 1:
        if jobs > 1:
            from verification.io.command import CommandError

            raise CommandError("--jobs runs local worker processes; under iclkd launch the processes are the jobs "
                               "(give one or the other)")
        return distributed.distributed_map(lambda s: run_seed(s, ids, profile), list(seeds),
                                           on_result=(lambda _, r: on_seed(r)) if on_seed else None)
    done: list[dict] = []
    if jobs == 1 or len(seeds) == 1:
        for s in seeds:
            done.append(run_seed(s, ids, profile))
            if on_seed:
                on_seed(done[-1])
        return done
    import jax

    initargs = (jax.config.jax_compilation_cache_dir, float(jax.config.jax_persistent_cache_min_compile_time_secs))
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=min(jobs, len(seeds)),
                                                  mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=_worker_init, initargs=initargs)
    try:
        futures = [pool.submit(run_seed, s, list(ids), profile) for s in seeds]
        for future in concurrent.futures.as_completed(futures):
            done.append(future.result())
            if on_seed:
                on_seed(done[-1])
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return sorted(done, key=lambda s: s["seed"])


# ------------------------------------------------------------------------------------------- command line


def add_arguments(p) -> None:
    """The flags of ``iclkd bench false-alarms`` (``p``: a :class:`verification.io.command.Parser`)."""
    from verification.core.model import PROFILES
    from verification.io.command import LazyChoices, check_ids, output_file, positive_int, seeds

    p.add_argument("--seeds", type=seeds, required=True, metavar="A..B",
                   help="the seeds: A..B (both included), a,b,c, or a mix such as 0..3,7")
    p.add_argument("--profile", default="quick", choices=tuple(PROFILES), help="verify's profile (default quick)")
    p.add_argument("--only", nargs="+", metavar="ID", choices=LazyChoices(check_ids),
                   help="run only these check ids (default: every check)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="worker processes, each running its seeds in one process (default 1: in this process)")
    p.add_argument("--json", type=output_file, metavar="PATH",
                   help="the JSON report (rewritten atomically after every seed)")
    p.add_argument("--markdown", type=output_file, metavar="PATH", help="the Markdown table (README, docs)")


def run(args: argparse.Namespace) -> int:
    """``iclkd bench false-alarms``: the suite over many seeds; per check the alarms and the margin."""
    from benchmarks.mutation import source_commit
    from verification.core.outputs import write_atomic, write_json
    from verification.engine import distributed
    from verification.engine.plugins import all_checks
    from verification.io.command import ExitStatus, unique_ids

    ids = unique_ids(args.only, list(all_checks()), "check id") or list(all_checks())
    commit, started, done = source_commit(), time.perf_counter(), []
    root = distributed.process_index() == 0

    def report(elapsed: float | None) -> dict:
        return build_report(done, profile=args.profile, seeds=args.seeds, ids=ids, commit=commit, elapsed_s=elapsed)

    def on_seed(seed_run: dict) -> None:
        done.append(seed_run)
        alarms = [f"{r['id']} {r['status']}" for r in seed_run["runs"] if r["status"] in (*ALARMS, INCONCLUSIVE)]
        print(f"[{len(done)}/{len(args.seeds)}] seed {seed_run['seed']}: {seed_run['elapsed_s']:.1f} s"
              f"{'; ' + ', '.join(alarms) if alarms else ''}", file=sys.stderr, flush=True)
        if args.json and root:  # partial: a long sweep that is stopped keeps its seeds
            write_json(args.json, report(None))

    def terminate(signum, frame):  # a batch system's stop: the same as Ctrl-C (workers shut down, partial JSON kept)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        done[:] = sweep(args.seeds, ids, args.profile, jobs=args.jobs, on_seed=on_seed)
    except KeyboardInterrupt:
        print(f"iclkd bench false-alarms: interrupted after {len(done)} seed(s)"
              f"{f'; partial report in {args.json}' if args.json and done else ''}", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    final = report(time.perf_counter() - started)
    print(table(final))
    if args.json:
        write_json(args.json, final)
    if args.markdown:
        write_atomic(args.markdown, markdown(final))
    return ExitStatus.VIOLATED if final["violated"] else ExitStatus.ERROR if final["error"] else ExitStatus.OK


def main(argv: list[str] | None = None) -> int:
    from verification.io.command import standalone

    return standalone("iclkd bench false-alarms", sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
