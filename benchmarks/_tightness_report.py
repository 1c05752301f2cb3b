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


class Plot:
    """The helpers a statement's ``tightness_figures`` hook draws with (matplotlib, Agg backend).

    ``subplots(*args, **kwargs)`` is ``matplotlib.pyplot.subplots``; ``band(ax, rows, label, color)`` plots the
    rows' ``observed`` against ``value`` with their 95% band where every row has one; ``axes(ax, xlabel,
    ylabel, title, logx=True)`` sets log scales, labels and the legend; ``save(fig)`` writes the figure as
    ``<id>.png`` (one per statement).
    """

    def __init__(self, out: Path, name: str, files: list[str]):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self._plt, self._out, self._name, self._files = plt, out, name, files

    def subplots(self, *args, **kwargs):
        return self._plt.subplots(*args, **kwargs)

    @staticmethod
    def band(ax, rows, label, color, marker="o"):
        x = [r["value"] for r in rows]
        ax.plot(x, [r["observed"] for r in rows], marker=marker, color=color, label=label)
        if all(r.get("observed_lo") is not None for r in rows):
            ax.fill_between(x, [r["observed_lo"] for r in rows], [r["observed_hi"] for r in rows], color=color,
                            alpha=0.25, linewidth=0, label=f"{label}: 95% CI")

    @staticmethod
    def axes(ax, xlabel, ylabel, title, logx=True):
        if logx:
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=7)

    def save(self, fig) -> None:
        fig.tight_layout()
        with atomic_path(self._out / self._name) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        self._plt.close(fig)
        self._files.append(self._name)


def plots(out: Path, drawers, slopes: dict) -> list[str]:
    """Each ``(check id, its tightness_figures hook, its rows)`` of ``drawers`` draws into ``out/<id>.png``
    (given the fits of ``slopes`` it made); the names of the files written."""
    files: list[str] = []
    for cid, draw, rows in drawers:
        draw(rows, slopes, Plot(out, f"{cid}.png", files))
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


def summary(meta, rows, slopes, figures, tables, not_offered) -> str:
    """``summary.md``: the slopes, then each statement's table (its ``tightness_table`` columns and note, else
    the default columns), what it does not offer and its figure."""
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
        table = tables.get(theorem)
        parts += [_table(sel, table.columns if table else _COLUMNS), ""]
        if table and table.note:
            parts += [table.note, ""]
        if not_offered.get(theorem):
            parts += ["; ".join(not_offered[theorem].values()) + ".", ""]
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
