"""``iclkd bench tightness [--quick] --out DIR``: how tight the bounds of THEOREMS.md are.

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
import json
import math
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from verification.command import Parser, listing, output_dir, output_file, seed, standalone
from verification.outputs import DEFAULT_OUTPUT_ROOT, write_atomic
from verification.outputs import write_csv as _write_csv_atomic

#: bump when a cell's computation changes: old cells then no longer match and are recomputed
CELL_VERSION = 1
THEOREMS = ("thm-3.2", "thm-4.1", "conj-4.1", "thm-4.2", "lemma-features")
PROVEN = ("thm-3.2", "thm-4.1", "thm-4.2")
ROW_KEYS = ("theorem", "parameter", "value", "bound", "observed", "observed_lo", "observed_hi")
#: bound >= observed is judged up to this relative round-off: the attained family of thm-4.1 is an equality
#: whose two sides are float64 kernel double sums (thm-4.1's own tolerance, 64 eps cond (1 + max logit), is
#: ~1e-12 at these sizes)
REL_TOL = 1e-9
BOOT_WIDTH = 4096  # the most draws a bootstrapped cell may have
BOOTSTRAP = {"tiny": 100, "quick": 1000, "full": 2000}

# ---------------------------------------------------------------------------------------- sweeps

MODES = {
    "tiny": dict(n3=[16, 64], draws3=64, b3=[], delta3=[], d3=[],
                 t41=[0.1, 0.03], fam41=["translation", "attained"], d41=[], dk41=[], draws41=16, n41=4,
                 bw=[], t42=[0.1], m_f=[16], kinds=["positive"], r_f=[1.0], draws_f=64, m0=16),
    "quick": dict(n3=[8, 16, 32, 64, 128, 256, 512], draws3=1000, b3=[0.25, 0.5, 2.0], delta3=[0.01, 0.1, 0.2],
                  d3=[1, 2], t41=[0.2, 0.1, 0.05, 0.025, 0.0125], fam41=["translation", "scale", "attained"],
                  d41=[2, 8], dk41=[1, 4], draws41=128, n41=16, bw=[0.1, 0.3, 1.0, 3.0, 10.0, 30.0],
                  t42=[0.2, 0.05, 0.0125], m_f=[16, 64, 256, 1024, 4096], kinds=["positive", "orthogonal", "trig"],
                  r_f=[0.5, 1.0, 1.5, 2.0, 2.5], draws_f=1000, m0=256),
    "full": dict(n3=[8, 16, 32, 64, 128, 256, 512, 1024, 2048], draws3=4000, b3=[0.25, 0.5, 2.0, 4.0],
                 delta3=[0.005, 0.01, 0.1, 0.2, 0.5], d3=[1, 2], t41=[0.4, 0.2, 0.1, 0.05, 0.025, 0.0125, 0.00625],
                 fam41=["translation", "scale", "attained"], d41=[2, 8, 16], dk41=[1, 2, 8], draws41=512, n41=32,
                 bw=[0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0], t42=[0.4, 0.1, 0.025, 0.00625],
                 m_f=[16, 64, 256, 1024, 4096, 16384], kinds=["positive", "orthogonal", "trig"],
                 r_f=[0.5, 1.0, 1.5, 2.0, 2.5, 3.0], draws_f=4000, m0=1024),
}

BASE3 = dict(d=3, N=128, B=1.0, delta=0.05, radius=1.0, wk_norm=0.7, wv_norm=1.0)
BASE41 = dict(d=4, dk=2, t=0.1, log_eta=math.log(0.5), wk_norm=1.5, wv_scale=1.7)
BASE_F = dict(dk=4, sum_norm=1.0, diff_norm=0.5)


def _target_error() -> float:
    from verification.checks.lemma_features import TARGET_RELATIVE_ERROR
    return TARGET_RELATIVE_ERROR


TARGET_ERROR = _target_error()


def cells(mode: str) -> list[dict]:
    """Every cell of a mode: ``{"theorem", "parameter", "value", "spec"}`` (spec = all the cell's parameters)."""
    c = MODES[mode]
    out = []

    def add(theorem, parameter, value, **spec):
        out.append({"theorem": theorem, "parameter": parameter, "value": value, "spec": spec})

    for n in c["n3"]:
        add("thm-3.2", "N", n, **{**BASE3, "N": n, "draws": c["draws3"]})
    for b in c["b3"]:
        add("thm-3.2", "B", b, **{**BASE3, "B": b, "draws": c["draws3"]})
    for delta in c["delta3"]:
        add("thm-3.2", "delta", delta, **{**BASE3, "delta": delta, "draws": c["draws3"]})
    for d in c["d3"]:
        add("thm-3.2", "d", d, **{**BASE3, "d": d, "draws": c["draws3"]})
    shift = dict(BASE41, n=c["n41"], draws=c["draws41"])
    for fam in c["fam41"]:
        for t in c["t41"]:
            add("thm-4.1", f"t ({fam})", t, **{**shift, "family": fam, "t": t})
    for d in c["d41"]:
        add("thm-4.1", "d (translation)", d, **{**shift, "family": "translation", "d": d})
        add("thm-4.1", "d (attained)", d, **{**shift, "family": "attained", "d": d})
    for dk in c["dk41"]:
        add("thm-4.1", "d_k (translation)", dk, **{**shift, "family": "translation", "dk": dk})
    if c["bw"]:
        add("conj-4.1", "bandwidth", None, **{**shift, "family": "translation", "bandwidths": c["bw"]})
    for t in c["t42"]:
        add("thm-4.2", "t (translation)", t, **{**shift, "family": "translation", "t": t})
    for kind in c["kinds"]:
        for m in c["m_f"]:
            add("lemma-features", f"m ({kind})", m, **{**BASE_F, "kind": kind, "m": m, "draws": c["draws_f"]})
    for r in c["r_f"]:
        add("lemma-features", "|k+q| (positive)", r, **{**BASE_F, "kind": "positive", "m": c["m0"], "sum_norm": r,
                                                         "diff_norm": 0.0, "target_error": TARGET_ERROR,
                                                         "draws": c["draws_f"]})
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
    from tqdm import tqdm

    from benchmarks import _tightness_cells as tc
    from verification.engine import journal as journal_units

    todo = [c for c in cells(mode) if only is None or c["theorem"] in only]
    records, log = [], {"computed": [], "loaded": []}
    bar = tqdm(total=len(todo), desc="tightness cells", unit="cell", disable=not progress, file=sys.stderr)

    def compute(cell: dict) -> dict:
        path = cell_path(out, cell, seed)
        data = None if journal is not None and journal.resume else load_cell(path, cell, seed)
        if data is None:
            bar.set_postfix_str(f"{cell['theorem']} {cell['parameter']}={cell['value']}")
            start, cpu = time.perf_counter(), time.process_time()
            result = tc.COMPUTE[cell["theorem"]](cell["spec"], seed)
            data = {"key": cell_key(cell, seed), "seed": seed, **cell, **result,
                    "elapsed_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu}
            write_atomic(path, json.dumps(data, allow_nan=False, default=_json_default))
            log["computed"].append(data["key"])
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
                   "kind": ("theorem" if rec["theorem"] in PROVEN else
                            "conjecture" if rec["theorem"].startswith("conj") else "prediction"),
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
    from benchmarks import _tightness_cells as tc

    boots = BOOTSTRAP[mode]
    out = {}

    def indices(tag, n, k):
        # one fixed shape of random bits (a single compilation for every n); modulo bias < n / 2^32
        bits = np.asarray(jax.random.bits(tc.subkey(seed, "bootstrap", tag, k), (boots, BOOT_WIDTH), jnp.uint32))
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
        fits = [tc.ols_slope(xs, np.log(np.maximum(b, 1e-300))) for b in boot_q]
        lo, hi = _boot_ci(fits)
        pieces = {k: np.array([r["rows"][0][k] for r in n_cells]) for k in ("bound", "rademacher_term",
                                                                             "deviation_term")}
        out["thm-3.2"] = {"x": "log N", "y": "log (1-δ)-quantile of the sup gap", "N": ns.tolist(),
                          "slope": tc.ols_slope(xs, np.log(qs)), "slope_lo": lo, "slope_hi": hi,
                          "bound_slope": tc.ols_slope(xs, np.log(pieces["bound"])),
                          "rademacher_term_slope": tc.ols_slope(xs, np.log(pieces["rademacher_term"])),
                          "deviation_term_slope": tc.ols_slope(xs, np.log(pieces["deviation_term"])),
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
        f_obs = [tc.ols_slope(ts, np.log(obs[:, i].mean(axis=1))) for i in idx]
        f_bnd = [tc.ols_slope(ts, np.log(bnd[:, i].mean(axis=1))) for i in idx]
        out[f"thm-4.1 ({fam})"] = {
            "x": "log t", "y": "log mean ||ΔW||_HS", "t": np.exp(ts).tolist(),
            "slope": tc.ols_slope(ts, np.log(obs.mean(axis=1))), "slope_lo": _boot_ci(f_obs)[0],
            "slope_hi": _boot_ci(f_obs)[1], "bound_slope": tc.ols_slope(ts, np.log(bnd.mean(axis=1))),
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
        fits = [tc.ols_slope(ms, np.log(b)) for b in boot]
        out[f"lemma-features ({kind})"] = {"x": "log m", "y": "log RMS relative error",
                                           "m": np.exp(ms).tolist(), "slope": tc.ols_slope(ms, np.log(rms)),
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
        fits = [tc.ols_slope(r2, np.log(b)) for b in boot]
        out["lemma-features (m needed vs |k+q|^2)"] = {
            "x": "|k+q|^2", "y": f"log m needed for RMS relative error {eps:g}", "|k+q|": np.sqrt(r2).tolist(),
            "slope": tc.ols_slope(r2, np.log(need)), "slope_lo": _boot_ci(fits)[0], "slope_hi": _boot_ci(fits)[1],
            "predicted_slope": tc.ols_slope(r2, np.log(pred)), "bootstrap": boots,
            "note": "log m_needed = log((exp(|k+q|^2) - 1)/eps^2): slope in |k+q|^2 tends to 1"}
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    """The rows as CSV (every key; the ROW_KEYS first), written atomically."""
    keys = list(ROW_KEYS) + sorted({k for r in rows for k in r} - set(ROW_KEYS))
    _write_csv_atomic(path, rows, keys)


#: what each statement's cells measure (``--only`` choices), one line each for ``--help``
SWEEPS = {
    "thm-3.2": "quantile of the exact supremum gap against the bound, across N, d, B and delta",
    "thm-4.1": "||dW||_HS against 2 eta ||W^V||_op MMD along translation, scale and attained families",
    "conj-4.1": "sup ||dW|| / MMD_rbf found, across RBF bandwidths (no bound)",
    "thm-4.2": "prediction and KD-risk shifts against their bounds, across t",
    "lemma-features": "RMS relative error of random features against m, and the m needed as |k+q| grows",
}
assert tuple(SWEEPS) == THEOREMS


def add_arguments(p: Parser) -> None:
    """The flags of ``iclkd bench tightness``."""
    p.epilog = listing("statements (--only)", SWEEPS)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="< 3 min on 2 CPU cores (default: the full sweep, < 30 min)")
    g.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test suite's configuration
    p.add_argument("--out", type=output_dir, default=str(DEFAULT_OUTPUT_ROOT / "tightness"), metavar="DIR",
                   help=f"output folder (cells/ inside it makes reruns resume; default {DEFAULT_OUTPUT_ROOT}/tightness)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--only", nargs="+", choices=THEOREMS, metavar="ID", help="run only these statements' cells")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs (and their links in summary.md)")
    p.add_argument("--html", type=output_file, metavar="PATH",
                   help="also write a self-contained HTML page of the sweeps (plots inline); an iclkd verify "
                        "--html page in the same folder links to it")
    p.add_argument("--no-progress", action="store_true")
    from verification.engine import journal

    journal.add_arguments(p, default="DIR/journal")


def main(argv: list[str] | None = None) -> int:
    return standalone("iclkd bench tightness", sys.modules[__name__], argv)


def run(args: argparse.Namespace) -> int:
    """``iclkd bench tightness``: the sweeps, their JSON, CSV, Markdown summary and plots in ``--out``."""
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
    from verification.engine import journal

    run_journal = journal.from_args(args, "bench tightness", {"seed": args.seed},
                                    selection={"mode": mode, "only": args.only}, default=out / "journal",
                                    prog="iclkd bench tightness")
    with journal.active(run_journal):
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
    from benchmarks import _tightness_report as report
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
        from verification.io.html import tightness_page

        write_atomic(args.html, tightness_page(json.loads(json.dumps(doc, default=_json_default)), out))
    print(report.console(meta, rows, slopes))
    if violated:
        print(f"bound < observed in {len(violated)} rows of proven statements", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
