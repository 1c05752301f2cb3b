"""Plots (matplotlib Agg), ``summary.md`` and the console table of ``benchmarks.tightness``."""

from __future__ import annotations

import math
from pathlib import Path

from verification.core.outputs import atomic_path


def _fmt(v, spec=".4g"):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return format(v, spec) if math.isfinite(v) else str(v)
    return str(v)


def _series(rows, theorem, parameter, quantity_prefix=""):
    sel = [r for r in rows if r["theorem"] == theorem and r["parameter"] == parameter
           and r.get("quantity", "").startswith(quantity_prefix)]
    return sorted(sel, key=lambda r: r["value"])


def _band(ax, rows, label, color, marker="o"):
    x = [r["value"] for r in rows]
    ax.plot(x, [r["observed"] for r in rows], marker=marker, color=color, label=label)
    if all(r.get("observed_lo") is not None for r in rows):
        ax.fill_between(x, [r["observed_lo"] for r in rows], [r["observed_hi"] for r in rows], color=color,
                        alpha=0.25, linewidth=0, label=f"{label}: 95% CI")


def _axes(ax, xlabel, ylabel, title, logx=True):
    if logx:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)


def plots(out: Path, rows: list[dict], slopes: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []

    def save(fig, name):
        fig.tight_layout()
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        files.append(name)

    # thm-3.2: quantile gap, bound and its pieces against N
    s = _series(rows, "thm-3.2", "N")
    if s:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        n = [r["value"] for r in s]
        sl = slopes.get("thm-3.2", {})
        _band(ax, s, f"(1-δ)-quantile of sup gap (slope {sl.get('slope', float('nan')):.2f})", "C0")
        ax.plot(n, [r["bound"] for r in s], "k-", label=f"bound (slope {sl.get('bound_slope', float('nan')):.2f})")
        ax.plot(n, [r["rademacher_term"] for r in s], "k--", label="Rademacher term 4BC(T+BC)/√N")
        ax.plot(n, [r["deviation_term"] for r in s], "k:", label="deviation term (T+BC)²√(log(1/δ)/2N)")
        _axes(ax, "N (demonstrations)", "sup_{‖W‖≤B} L(W) − L_N(W)  (squared value units)",
              f"Theorem 3.2, δ={s[0]['quantity'].split('δ=')[-1]}, uniform ball d=3")
        save(fig, "thm-3.2.png")
    # thm-4.1: ||ΔW|| and bound against t per family
    fams = [f for f in ("translation", "scale", "attained") if _series(rows, "thm-4.1", f"t ({f})")]
    if fams:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for i, fam in enumerate(fams):
            s = _series(rows, "thm-4.1", f"t ({fam})")
            sl = slopes.get(f"thm-4.1 ({fam})", {})
            _band(ax, s, f"‖ΔW‖ {fam} (slope {sl.get('slope', float('nan')):.2f})", f"C{i}")
            ax.plot([r["value"] for r in s], [r["bound"] for r in s], "--", color=f"C{i}",
                    label=f"bound {fam} (slope {sl.get('bound_slope', float('nan')):.2f})")
        _axes(ax, "shift t (translation length / scale change 1+t)", "‖ΔW‖_HS vs 2η‖W^V‖_op MMD_k (value units)",
              "Theorem 4.1 along shift families (mean over coupled draws)")
        save(fig, "thm-4.1.png")
    # thm-4.2
    s_pred = _series(rows, "thm-4.2", "t (translation)", "prediction")
    s_risk = _series(rows, "thm-4.2", "t (translation)", "KD-risk")
    if s_pred:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for i, (s, name) in enumerate(((s_pred, "prediction shift"), (s_risk, "KD-risk shift"))):
            _band(ax, s, name, f"C{i}")
            ax.plot([r["value"] for r in s], [r["bound"] for r in s], "--", color=f"C{i}", label=f"{name} bound")
        _axes(ax, "shift t (translation length)", "|difference| (value units; risk: squared)",
              "Theorem 4.2: prediction and KD-risk shifts vs bounds")
        save(fig, "thm-4.2.png")
    # lemma-features
    kinds = [k for k in ("positive", "orthogonal", "trig") if _series(rows, "lemma-features", f"m ({k})")]
    if kinds:
        growth = _series(rows, "lemma-features", "|k+q| (positive)")
        fig, axes = plt.subplots(1, 2 if growth else 1, figsize=(10 if growth else 6.4, 4.4), squeeze=False)
        ax = axes[0, 0]
        for i, kind in enumerate(kinds):
            s = _series(rows, "lemma-features", f"m ({kind})")
            sl = slopes.get(f"lemma-features ({kind})", {})
            _band(ax, s, f"{kind} (slope {sl.get('slope', float('nan')):.2f})", f"C{i}")
            if s[0]["bound"] is not None:
                ax.plot([r["value"] for r in s], [r["bound"] for r in s], ":", color=f"C{i}",
                        label=f"{kind}: predicted √(var/m)")
        _axes(ax, "m (random features)", "RMS relative error of φ(u)·φ(z) vs exp(u·z)",
              "Random-feature error against m")
        if growth:
            ax = axes[0, 1]
            _band(ax, growth, "m needed (measured)", "C0")
            ax.plot([r["value"] for r in growth], [r["bound"] for r in growth], "k--",
                    label="predicted (exp(‖k+q‖²)−1)/ε²")
            _axes(ax, "‖k + q‖", "features m for RMS relative error ε", "Positive features: exp(‖k+q‖²) growth",
                  logx=False)
        save(fig, "lemma-features.png")
    return files


_COLUMNS = ("theorem", "parameter", "value", "quantity", "bound", "observed", "observed_lo", "observed_hi",
            "ratio", "max_ratio")


def _table(rows, columns=_COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines)


def _slope_table(slopes) -> str:
    lines = ["| fit | slope | 95% CI | bound / predicted slope |", "|---|---|---|---|"]
    for name, s in slopes.items():
        ref = s.get("bound_slope", s.get("predicted_slope"))
        lines.append(f"| {name}: {s['y']} vs {s['x']} | {s['slope']:.3f} | [{s['slope_lo']:.3f}, {s['slope_hi']:.3f}] "
                     f"| {_fmt(ref, '.3f')} |")
    return "\n".join(lines)


def summary(meta, rows, slopes, figures) -> str:
    parts = [f"# Bound tightness ({meta['mode']}, seed {meta['seed']})", "",
             f"{meta['cells']} cells ({meta['cells_computed']} computed, {meta['cells_loaded']} resumed) on "
             f"{len(meta['devices'])} device(s) in {meta['elapsed_s']:.1f} s. Rows of proven statements with "
             f"bound < observed: **{meta['rows_bound_below_observed']}**.", "",
             "Observed figures that are statistical carry 95% confidence limits (`observed_lo`, `observed_hi`): "
             "order-statistic (binomial) limits for quantiles, Student-t limits for means and mean squares. "
             "Slopes are least-squares fits on log scales with percentile-bootstrap CIs.", "",
             "## Slopes", "", _slope_table(slopes), ""]
    for theorem in dict.fromkeys(r["theorem"] for r in rows):  # every statement with cells, plugins included
        sel = [r for r in rows if r["theorem"] == theorem]
        parts += [f"## {theorem}", ""]
        if theorem == "thm-3.2":
            parts += [_table(sel, ("parameter", "value", "bound", "rademacher_term", "deviation_term", "observed",
                                   "observed_lo", "observed_hi", "ratio", "violation_rate", "draws")), ""]
        elif theorem == "lemma-features":
            parts += [_table(sel, ("parameter", "value", "quantity", "bound", "observed", "observed_lo",
                                   "observed_hi", "prediction_in_ci")), "",
                      "`bound` here is the predicted value (an expectation, not an upper bound): for iid "
                      "positive and trigonometric features the per-feature variance is known exactly; "
                      "orthogonal features have no closed form.", ""]
        else:
            parts += [_table(sel), ""]
        name = f"{theorem}.png"
        if name in figures:
            parts += [f"![{theorem}]({name})", ""]
    return "\n".join(parts)


def console(meta, rows, slopes) -> str:
    lines = [f"tightness ({meta['mode']}): {meta['cells']} cells, {meta['cells_computed']} computed, "
             f"{meta['elapsed_s']:.1f} s"]
    for name, s in slopes.items():
        ref = s.get("bound_slope", s.get("predicted_slope"))
        lines.append(f"  slope {name:42s} {s['slope']:+.3f} [{s['slope_lo']:+.3f}, {s['slope_hi']:+.3f}]"
                     f"  bound/predicted {_fmt(ref, '+.3f')}")
    theorem_rows = [r for r in rows if r["kind"] == "theorem"]
    if theorem_rows:
        worst = max(theorem_rows, key=lambda r: r["observed"] / r["bound"] if r["bound"] else 0)
        lines.append(f"  rows of proven statements: {len(theorem_rows)}, bound < observed in "
                     f"{meta['rows_bound_below_observed']}; closest: {worst['theorem']} {worst['parameter']}="
                     f"{worst['value']} observed/bound {worst['observed'] / worst['bound']:.6g}")
    return "\n".join(lines)
