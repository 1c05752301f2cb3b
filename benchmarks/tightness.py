"""``iclkd bench tightness [--quick] --out DIR``: how tight the bounds of docs/statements.md are.

Sweeps (every cell one point of one sweep, its draws vmapped and sharded over the JAX devices):

* ``thm-3.2``: the (1-δ)-quantile of the exact supremum gap ``sup_{||W||<=B} L - L_N`` (order-statistic
  CI) against the bound ``4BC(T+BC)/sqrt(N) + (T+BC)^2 sqrt(log(1/δ)/(2N))`` and its two pieces, across
  N (log-log slopes with bootstrap CIs), d, B and δ. Taylor map of order 2 (thm-3.2's), population
  moments exact (uniform ball), so the only statistical error is the draws'.
* ``thm-4.1``: ``||ΔW||_HS`` against ``2η ||W^V||_op MMD_k`` along the translation and scale families
  and the attained family (``W^V = s Q``, Q orthogonal, d_v = d: equality), across t, d and d_k;
  slopes of both in t. ``conj-4.1``: ``sup ||ΔW|| / MMD_rbf`` found, across RBF bandwidths (no bound).
* ``thm-4.2``: prediction and KD-risk shifts against their bounds, across t.
* ``lemma-features``: RMS relative error of positive (iid, orthogonal) and trigonometric random
  features against m (slope, predicted -1/2), and the m needed for a fixed RMS relative error as
  ``|k+q|`` grows (predicted ``(exp(|k+q|^2) - 1)/ε^2``).

Outputs in DIR: ``tightness.json`` (``meta``, ``rows``, ``slopes``), ``tightness.csv``, one PNG per
statement, ``summary.md``; finished cells in ``DIR/cells/*.json`` (written atomically, keyed by a hash
of the cell's parameters and the seed), so a killed sweep restarted with the same arguments resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from benchmarks import _tightness_report as report
from verification.cases.sweeps import ols_slope, subkey
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


def _boot_ci(values, level=0.95):
    values = np.asarray(values)
    a = (1 - level) / 2
    return float(np.quantile(values, a)), float(np.quantile(values, 1 - a))


def _sweep(records, theorem, parameter):
    """The finished cells of one sweep, by increasing value."""
    return sorted((r for r in records if r["theorem"] == theorem and r["parameter"] == parameter),
                  key=lambda r: r["value"])


def slopes_of(records: list[dict], mode: str, seed: int) -> dict:
    """Log-log slopes with percentile-bootstrap CIs (draws resampled within each cell; jax.random indices)."""
    boots = BOOTSTRAP[mode]
    out = {}

    def indices(tag, n, k):
        # one fixed shape of random bits (a single compilation for every n); modulo bias < n / 2^32
        bits = np.asarray(jax.random.bits(subkey(seed, "bootstrap", tag, k), (boots, BOOT_WIDTH), jnp.uint32))
        if n > BOOT_WIDTH:
            raise ValueError(f"bootstrap over {n} draws needs BOOT_WIDTH >= {n}")
        return (bits[:, :n] % n).astype(np.int64)

    # thm-3.2: quantile gap and bound against N
    n_cells = _sweep(records, "thm-3.2", "N")
    if len(n_cells) >= 2:
        ns = np.array([r["value"] for r in n_cells], float)
        delta = n_cells[0]["spec"]["delta"]
        qs = np.array([r["rows"][0]["observed"] for r in n_cells])
        boot_q = np.empty((boots, len(n_cells)))
        for j, r in enumerate(n_cells):
            g = np.sort(np.asarray(r["raw"]["gaps"]))
            idx = indices("thm-3.2", g.size, j)
            boot_q[:, j] = np.quantile(g[idx], 1 - delta, axis=1, method="inverted_cdf")
        xs = np.log(ns)
        fits = [ols_slope(xs, np.log(np.maximum(b, 1e-300))) for b in boot_q]
        lo, hi = _boot_ci(fits)
        pieces = {k: np.array([r["rows"][0][k] for r in n_cells]) for k in ("bound", "rademacher_term",
                                                                             "deviation_term")}
        out["thm-3.2"] = {"x": "log N", "y": "log (1-δ)-quantile of the sup gap", "N": ns.tolist(),
                          "slope": ols_slope(xs, np.log(qs)), "slope_lo": lo, "slope_hi": hi,
                          "bound_slope": ols_slope(xs, np.log(pieces["bound"])),
                          "rademacher_term_slope": ols_slope(xs, np.log(pieces["rademacher_term"])),
                          "deviation_term_slope": ols_slope(xs, np.log(pieces["deviation_term"])),
                          "bootstrap": boots, "level": 0.95, "delta": delta}
    # thm-4.1: ||ΔW|| and bound against t, per family (same draws at every t: resample jointly)
    for fam in ("translation", "scale", "attained"):
        fc = _sweep(records, "thm-4.1", f"t ({fam})")
        if len(fc) < 2:
            continue
        ts = np.log([r["value"] for r in fc])
        obs = np.array([r["raw"]["observed"] for r in fc])   # (t, draws)
        bnd = np.array([r["raw"]["bound"] for r in fc])
        idx = indices(f"thm-4.1/{fam}", obs.shape[1], 0)
        f_obs = [ols_slope(ts, np.log(obs[:, i].mean(axis=1))) for i in idx]
        f_bnd = [ols_slope(ts, np.log(bnd[:, i].mean(axis=1))) for i in idx]
        out[f"thm-4.1 ({fam})"] = {
            "x": "log t", "y": "log mean ||ΔW||_HS", "t": np.exp(ts).tolist(),
            "slope": ols_slope(ts, np.log(obs.mean(axis=1))), "slope_lo": _boot_ci(f_obs)[0],
            "slope_hi": _boot_ci(f_obs)[1], "bound_slope": ols_slope(ts, np.log(bnd.mean(axis=1))),
            "bound_slope_lo": _boot_ci(f_bnd)[0], "bound_slope_hi": _boot_ci(f_bnd)[1],
            # the slope in t itself (not log-log): d||ΔW||/dt at the smallest t, observed <= bound
            "dw_over_t_smallest_t": float(obs[0].mean() / np.exp(ts[0])),
            "bound_over_t_smallest_t": float(bnd[0].mean() / np.exp(ts[0])), "bootstrap": boots}
    # lemma-features: RMS error against m per kind; m needed against |k+q|^2
    for kind in ("positive", "orthogonal", "trig"):
        fc = _sweep(records, "lemma-features", f"m ({kind})")
        if len(fc) < 2:
            continue
        ms = np.log([r["value"] for r in fc])
        errs = [np.asarray(r["raw"]["err"]) for r in fc]
        rms = np.array([math.sqrt(np.mean(e**2)) for e in errs])
        boot = np.empty((boots, len(fc)))
        for j, e in enumerate(errs):
            boot[:, j] = np.sqrt(np.mean(e[indices(f"features/{kind}", e.size, j)] ** 2, axis=1))
        fits = [ols_slope(ms, np.log(b)) for b in boot]
        out[f"lemma-features ({kind})"] = {"x": "log m", "y": "log RMS relative error",
                                           "m": np.exp(ms).tolist(), "slope": ols_slope(ms, np.log(rms)),
                                           "slope_lo": _boot_ci(fits)[0], "slope_hi": _boot_ci(fits)[1],
                                           "predicted_slope": -0.5, "bootstrap": boots}
    fc = _sweep(records, "lemma-features", "|k+q| (positive)")
    if len(fc) >= 2:
        r2 = np.array([r["value"] ** 2 for r in fc])
        need = np.array([r["rows"][0]["observed"] for r in fc])
        pred = np.array([r["rows"][0]["bound"] for r in fc])
        m0 = fc[0]["spec"]["m"]
        eps = fc[0]["spec"]["target_error"]
        boot = np.empty((boots, len(fc)))
        for j, r in enumerate(fc):
            e = np.asarray(r["raw"]["err"])
            boot[:, j] = m0 * np.mean(e[indices("features/growth", e.size, j)] ** 2, axis=1) / eps**2
        fits = [ols_slope(r2, np.log(b)) for b in boot]
        out["lemma-features (m needed vs |k+q|^2)"] = {
            "x": "|k+q|^2", "y": f"log m needed for RMS relative error {eps:g}", "|k+q|": np.sqrt(r2).tolist(),
            "slope": ols_slope(r2, np.log(need)), "slope_lo": _boot_ci(fits)[0], "slope_hi": _boot_ci(fits)[1],
            "predicted_slope": ols_slope(r2, np.log(pred)), "bootstrap": boots,
            "note": "log m_needed = log((exp(|k+q|^2) - 1)/eps^2): slope in |k+q|^2 tends to 1"}
    return out


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
    figures = report.plots(out, rows, slopes) if plots else []
    meta.update(elapsed_s=time.perf_counter() - start, cpu_s=time.process_time(), slopes_s=slopes_s,
                plots_s=time.perf_counter() - cells_done - slopes_s, cells_wall_s=cells_done - start,
                cells_cpu_s=cpu_done, cpu_count=os.cpu_count(),
                load_average=os.getloadavg() if hasattr(os, "getloadavg") else None)
    doc = {"meta": meta, "rows": rows, "slopes": slopes, "figures": figures, "cells": log}
    write_atomic(out / "tightness.json", json.dumps(doc, indent=1, allow_nan=False, default=_json_default) + "\n")
    write_csv(out / "tightness.csv", rows)
    write_atomic(out / "summary.md", report.summary(meta, rows, slopes, figures))
    if args.html:
        write_atomic(args.html, tightness_page(json.loads(json.dumps(doc, default=_json_default)), out))
    print(report.console(meta, rows, slopes))
    if violated:
        print(f"bound < observed in {len(violated)} rows of proven statements", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
