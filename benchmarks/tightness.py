"""``iclkd bench tightness [--quick] --out DIR``: how tight the bounds of docs/statements.md are.

Sweeps: every registered check that offers the ``tightness_cells`` hook (verification.core.protocol; the
built-in statements keep theirs in ``verification/statements/<id>/tightness.py``, listed below with what
they measure). Every cell is one point of one sweep, its draws vmapped and sharded over the JAX devices;
a statement's ``tightness_fits`` hook fits its slopes (log-log, percentile-bootstrap CIs), its
``tightness_figures`` hook draws its plot and its ``tightness_table`` hook chooses its table's columns.
docs/tightness.md describes each sweep.

Outputs in DIR: ``tightness.json`` (``meta``, ``rows``, ``slopes``, ``figures``, ``cells``,
``not_offered``), ``tightness.csv``, one PNG per statement that draws one, ``summary.md``; finished cells
in ``DIR/cells/*.json`` (written atomically, keyed by a hash of the cell's parameters and the seed), so a
killed sweep restarted with the same arguments resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from benchmarks import _tightness_report as report
from verification.cases.sweeps import Bootstrap
from verification.core import protocol
from verification.core.outputs import DEFAULT_OUTPUT_ROOT, write_atomic
from verification.core.outputs import write_csv as _write_csv_atomic
from verification.engine import journal as journal_units
from verification.engine.plugins import all_checks, load_plugin
from verification.io.command import CommandError, Parser, listing, output_dir, output_file, seed, standalone
from verification.io.html import tightness_page

#: bump when a cell's computation changes: old cells then no longer match and are recomputed
CELL_VERSION = 1
ROW_KEYS = ("theorem", "parameter", "value", "bound", "observed", "observed_lo", "observed_hi")
#: bound >= observed is judged up to this relative round-off: the attained family of thm-4.1 is an equality
#: whose two sides are float64 kernel double sums (thm-4.1's own tolerance, 64 eps cond (1 + max logit), is
#: ~1e-12 at these sizes)
REL_TOL = 1e-9
BOOT_WIDTH = 4096  # the most draws a bootstrapped cell may have
BOOTSTRAP = {"tiny": 100, "quick": 1000, "full": 2000}
#: what every fit of a ``tightness_fits`` hook holds (the summary's slope table reads them)
FIT_KEYS = ("x", "y", "slope", "slope_lo", "slope_hi")

# ---------------------------------------------------------------------------------------- sweeps

MODES = ("tiny", "quick", "full")


def sweeping_checks() -> dict[str, type]:
    """The registered checks that offer the ``tightness_cells`` hook (verification.core.protocol), in report order."""
    return {cid: cls for cid, cls in all_checks().items() if protocol.offers(cls, "tightness_cells")}


def sweeps() -> dict[str, str]:
    """``{check id: what its cells measure}`` (the first line of its ``tightness_cells`` docstring)."""
    return {cid: (inspect.getdoc(cls.tightness_cells) or "").split("\n")[0] for cid, cls in sweeping_checks().items()}


def cells(mode: str, only=None) -> list[dict]:
    """Every cell of a mode: ``{"theorem", "parameter", "value", "spec", "kind", "compute"}`` from each check's
    ``tightness_cells`` hook (``spec`` = all the cell's parameters)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    out = []
    for cid, cls in sweeping_checks().items():
        if only is not None and cid not in only:
            continue
        for cell in cls.tightness_cells(mode):
            if not isinstance(cell, protocol.TightnessCell):
                raise TypeError(f"{cid}.tightness_cells() must return TightnessCell objects, got {type(cell).__name__}")
            out.append({"theorem": cid, "parameter": cell.parameter, "value": cell.value, "spec": cell.spec,
                        "kind": cell.kind, "compute": cell.compute})
    return out


def cell_key(cell: dict, seed: int) -> str:
    """Hash of the cell's parameters and the seed (and CELL_VERSION)."""
    blob = json.dumps({"theorem": cell["theorem"], "spec": cell["spec"], "seed": seed, "version": CELL_VERSION},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cell_path(out: Path, cell: dict, seed: int) -> Path:
    slug = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in f"{cell['theorem']}_{cell['parameter']}")
    return out / "cells" / f"{slug}_{cell_key(cell, seed)}.json"


def load_cell(path: Path, cell: dict, seed: int) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != cell_key(cell, seed):
        return None
    return data


def run_cells(mode: str, out: Path, seed: int, only=None, progress=True, journal=None) -> tuple[list[dict], dict]:
    """Computes (or loads) every cell; returns the cell records and ``{"computed": [...], "loaded": [...]}`` keys.

    A cell file of ``out/cells`` is loaded when its key (parameters, seed, ``CELL_VERSION``) matches. With a
    resuming ``journal`` (``--resume``; :mod:`verification.engine.journal`) the journal decides instead,
    also checking the code and versions: a cell it does not reuse is computed again.
    """

    todo = cells(mode, only)
    records, log = [], {"computed": [], "loaded": []}
    bar = tqdm(total=len(todo), desc="tightness cells", unit="cell", disable=not progress, file=sys.stderr)

    def compute(cell: dict) -> dict:
        path = cell_path(out, cell, seed)
        data = None if journal is not None and journal.resume else load_cell(path, cell, seed)
        if data is None:
            bar.set_postfix_str(f"{cell['theorem']} {cell['parameter']}={cell['value']}")
            start, cpu = time.perf_counter(), time.process_time()
            result = cell["compute"](cell["spec"], seed)
            data = {"key": cell_key(cell, seed), "seed": seed, **{k: v for k, v in cell.items() if k != "compute"},
                    **result,
                    "elapsed_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu}
            write_atomic(path, json.dumps(data, allow_nan=False, default=_json_default))
            log["computed"].append(data["key"])
        else:
            data["kind"] = cell["kind"]  # the hook's, also for cells cached before it was recorded
        return data

    def unit(cell: dict):
        return journal_units.Unit(f"cell/{cell['theorem']}/{cell_key(cell, seed)}",
                                  f"{cell['theorem']} {cell['parameter']}={cell['value']}",
                                  scopes=(*journal_units.BASE_SCOPES, "benchmarks"))

    # collective: every process takes part in every cell (its draws are sharded over all devices)
    for data in journal_units.map_units(todo, compute, journal=journal, unit_of=unit, decode=dict, collective=True):
        if data["key"] not in log["computed"]:
            log["loaded"].append(data["key"])
        records.append(data)
        bar.update(1)
    bar.close()
    return records, log


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(type(o).__name__)


# ----------------------------------------------------------------------------------- assembling

def rows_of(records: list[dict]) -> list[dict]:
    rows = []
    for rec in records:
        for r in rec["rows"]:
            row = {"theorem": rec["theorem"], "parameter": rec["parameter"], "value": rec["value"],
                   "kind": rec["kind"],
                   "observed_lo": None, "observed_hi": None, **r}
            row["bound_ge_observed"] = (None if row["bound"] is None or row["kind"] != "theorem"
                                        else bool(row["observed"] <= row["bound"] * (1 + REL_TOL)))
            rows.append(row)
    return rows


def slopes_of(records: list[dict], mode: str, seed: int) -> dict:
    """Every swept statement's slope fits (its ``tightness_fits`` hook), in report order: log-log slopes with
    percentile-bootstrap CIs (draws resampled within each cell; jax.random indices from ``seed``)."""
    bootstrap = Bootstrap(seed, BOOTSTRAP[mode], BOOT_WIDTH)
    out = {}
    for cid, cls in sweeping_checks().items():
        own = [r for r in records if r["theorem"] == cid]
        if not own or not protocol.offers(cls, "tightness_fits"):
            continue
        fits = cls.tightness_fits(own, bootstrap)
        for name, fit in fits.items():
            missing = [k for k in FIT_KEYS if not isinstance(fit, dict) or k not in fit]
            if missing or name in out:
                raise protocol.HookError(f"{cid}.tightness_fits(): fit {name!r} "
                                         + (f"lacks {', '.join(missing)}" if missing else "is another statement's"))
            out[name] = fit
    return out


def not_offered(records: list[dict]) -> dict[str, dict[str, str]]:
    """``{check id: {hook: reason}}`` for each swept statement's fits and figure it does not offer."""
    swept = dict.fromkeys(r["theorem"] for r in records)
    checks = sweeping_checks()
    return {cid: missing for cid in swept if cid in checks
            and (missing := {hook: protocol.not_offered(checks[cid], hook)
                             for hook in ("tightness_fits", "tightness_figures")
                             if not protocol.offers(checks[cid], hook)})}


def tables() -> dict[str, protocol.TightnessTable]:
    """``{check id: its summary table}`` for the statements that offer the ``tightness_table`` hook."""
    return {cid: cls.tightness_table for cid, cls in sweeping_checks().items()
            if protocol.offers(cls, "tightness_table")}


def figures_of(out: Path, rows: list[dict], slopes: dict) -> list[str]:
    """Each swept statement's figure (its ``tightness_figures`` hook) as ``out/<id>.png``; the file names."""
    plots = []
    for cid, cls in sweeping_checks().items():
        own = [r for r in rows if r["theorem"] == cid]
        if own and protocol.offers(cls, "tightness_figures"):
            plots.append((cid, cls.tightness_figures, own))
    return report.plots(out, plots, slopes)


def write_csv(path: Path, rows: list[dict]) -> None:
    """The rows as CSV (every key; the ROW_KEYS first), written atomically."""
    keys = list(ROW_KEYS) + sorted({k for r in rows for k in r} - set(ROW_KEYS))
    _write_csv_atomic(path, rows, keys)


def add_arguments(p: Parser) -> None:
    """The flags of ``iclkd bench tightness``."""
    p.epilog = listing("statements (--only)", sweeps())
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="< 3 min on 2 CPU cores (default: the full sweep, < 30 min)")
    g.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test suite's configuration
    p.add_argument("--out", type=output_dir, default=str(DEFAULT_OUTPUT_ROOT / "tightness"), metavar="DIR",
                   help=f"output folder (cells/ inside it makes reruns resume; default {DEFAULT_OUTPUT_ROOT}/tightness)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--only", nargs="+", metavar="ID",
                   help="run only these statements' cells (those that offer the tightness_cells hook)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs (and their links in summary.md)")
    p.add_argument("--html", type=output_file, metavar="PATH",
                   help="also write a self-contained HTML page of the sweeps (plots inline); an iclkd verify "
                        "--html page in the same folder links to it")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                   help="load checks from a plugin first (repeatable); a check that offers tightness_cells is swept")
    p.add_argument("--no-progress", action="store_true")
    journal_units.add_arguments(p, default="DIR/journal")


def main(argv: list[str] | None = None) -> int:
    return standalone("iclkd bench tightness", sys.modules[__name__], argv)


def run(args: argparse.Namespace) -> int:
    """``iclkd bench tightness``: the sweeps, their JSON, CSV, Markdown summary and plots in ``--out``."""
    for spec in args.plugin:
        load_plugin(spec)
    if args.only:
        unknown = [cid for cid in args.only if cid not in sweeping_checks()]
        if unknown:
            raise CommandError(f"--only: {', '.join(unknown)} offer(s) no tightness cells; known: "
                               f"{', '.join(sweeping_checks())}")
    plots = not args.no_plots
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            plots = False
            print("iclkd bench tightness: matplotlib is not installed, so the plots are skipped (JSON, CSV and "
                  "summary.md are written); pip install 'iclkd-jax[plots]' to get them", file=sys.stderr)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    start = time.perf_counter()
    out = args.out
    run_journal = journal_units.from_args(args, "bench tightness", {"seed": args.seed},
                                    selection={"mode": mode, "only": args.only}, default=out / "journal",
                                    prog="iclkd bench tightness")
    with journal_units.active(run_journal):
        records, log = run_cells(mode, out, args.seed, args.only, progress=not args.no_progress, journal=run_journal)
    cells_done, cpu_done = time.perf_counter(), time.process_time()
    rows = rows_of(records)
    slopes = slopes_of(records, mode, args.seed)
    slopes_s = time.perf_counter() - cells_done
    violated = [r for r in rows if r["kind"] == "theorem" and r["bound_ge_observed"] is False]
    meta = {"mode": mode, "seed": args.seed, "only": args.only, "devices": [str(d) for d in jax.devices()],
            "cells": len(records), "cells_computed": len(log["computed"]), "cells_loaded": len(log["loaded"]),
            "elapsed_s": None,
            "jax": jax.__version__, "rows_bound_below_observed": len(violated)}
    figures = figures_of(out, rows, slopes) if plots else []
    meta.update(elapsed_s=time.perf_counter() - start, cpu_s=time.process_time(), slopes_s=slopes_s,
                plots_s=time.perf_counter() - cells_done - slopes_s, cells_wall_s=cells_done - start,
                cells_cpu_s=cpu_done, cpu_count=os.cpu_count(),
                load_average=os.getloadavg() if hasattr(os, "getloadavg") else None)
    missing = not_offered(records)
    doc = {"meta": meta, "rows": rows, "slopes": slopes, "figures": figures, "cells": log, "not_offered": missing}
    write_atomic(out / "tightness.json", json.dumps(doc, indent=1, allow_nan=False, default=_json_default) + "\n")
    write_csv(out / "tightness.csv", rows)
    write_atomic(out / "summary.md", report.summary(meta, rows, slopes, figures, tables(), missing))
    if args.html:
        write_atomic(args.html, tightness_page(json.loads(json.dumps(doc, default=_json_default)), out))
    print(report.console(meta, rows, slopes))
    if violated:
        print(f"bound < observed in {len(violated)} rows of proven statements", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
