"""The HTML report: one self-contained page per run, readable in a browser at a glance.

``iclkd verify --html PATH`` (and ``--self-test --html``), ``iclkd bench tightness --html`` and
``iclkd search --html`` each write one file that needs nothing else: the CSS is inline, the plots
are inline SVG made with matplotlib (the ``plots`` extra; raster parts such as heatmaps are PNG data
URIs inside the SVG), the text uses the reader's system fonts, and there is no script and no
reference to anything outside the file, so it opens offline and can be attached to an e-mail or a
paper's supplement. Without matplotlib the page is written without plots and says so.

What a page shows comes from the report data only, never from the runner: the dict that the JSON
report is made from (:func:`verification.io.report.to_json`: ``profile``, ``seed``, ``versions``,
``checks``: one :class:`~verification.core.model.CheckResult` as a dict each), the self-test's outcomes,
and the statements document (:func:`statement_text`), so the writers survive changes of the engine. Where the
document is not at hand (an installed package carries no docs/) or has no section for a check (a plugin), a
card states what the registered check states of itself (:meth:`~verification.core.model.Check.stated`).

A verify page has a summary banner (counts of each verdict, seed, profile, versions, certificate
statuses) and one card per check: the statement in words and in maths, verdict, cases, worst value
against its tolerance, tightness, tolerance reason, the counterexample (inputs as small tables), the
certificate with the widths of its balls, the mutants' kills (``--self-test``) and a plot of what was
measured. The plot is chosen by the figures a check reports, not by its id, so a plugin check that
reports the same figures gets the same plots:

* ``per_case_quantiles`` ``{"measure", "values", "limit"}`` (:func:`verification.core.model.case_quantiles`):
  the distribution over cases of the judged figure (for a bound, observed/bound), with its limit;
* ``linear_growth`` (thm-4.1): growth exponents and slope ratios with their 95 % intervals;
* ``per_kernel`` (conj-4.1): ``c_hat`` per kernel against the refutation threshold;
* ``slopes_[value,se]`` (lemma-features): log-log error slopes against -1/2;
* ``settings`` (thm-3.2): bound, quantile and largest gap per law;
* ``N`` with ``deviation_quantile`` (conj-3.2): the deviation against N on log-log axes;
* layer x head arrays of a real-model check (``per_layer_head_*``, ``per_head_*``, ``ratio_by_layer_head_pair``):
  heatmaps, ratios shown as tightness ``1/ratio``;
* otherwise, for a figure judged against a tolerance: worst / tolerance as one bar.

A verify page links to the other iclkd pages in its folder (a tightness or search page written beside it):
every page carries ``<meta name="iclkd-page" content="KIND">``, and :func:`sibling_pages` finds them.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from verification.core.model import REGISTRY
from verification.core.outputs import write_atomic

#: the document the cards state the statements from (docs/theorems.md: one section per statement, in words with what
#: the suite found, and a table of ids with each statement in maths); in a source checkout only
STATEMENTS_DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "theorems.md"

#: the ``<meta name=...>`` that marks a page written by this module (its content: the page's kind)
PAGE_META = "iclkd-page"

#: verdicts in the banner's order, with the colour class of each
VERDICTS = ("holds", "violated", "refuted", "survives", "inconclusive", "error")


# ------------------------------------------------------------------------------------ the statements document


@dataclasses.dataclass(frozen=True)
class Statement:
    """One statement as the statements document gives it: a section title, its text and its formula."""

    title: str
    words: str        # the section's prose before its first list, as Markdown
    maths: str        # the formula from the document's table of statements (Markdown), or ""


def _aliases(check_id: str) -> list[str]:
    """Heading patterns that name a statement in prose: ``thm-3.1a`` -> ``Theorem 3.1(a)``, ``conj-4.1`` ->
    ``Conjecture 4.1``; a heading may also carry the id itself."""
    out = [re.escape(check_id)]
    kind, _, number = check_id.partition("-")
    words = {"thm": "Theorem", "lemma": "Lemma", "conj": "Conjecture", "prop": "Proposition", "cor": "Corollary"}
    match = re.fullmatch(r"(\d+(?:\.\d+)*)([a-z]?)", number)
    if kind in words and match:
        digits, letter = match.groups()
        tail = rf"\({letter}\)" if letter else ""
        out.append(rf"{words[kind]}\s+{re.escape(digits)}{tail}(?!\.?\d|\()")
    return out


@functools.lru_cache(maxsize=8)
def _sections(document: str, mtime: float) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The document's ``(heading, body)`` sections and its table of statements ``{id: formula}``."""
    text = Path(document).read_text(encoding="utf-8")
    sections: list[tuple[str, str]] = []
    heading, body = "", []
    for line in text.splitlines():
        if re.match(r"#{2,4} ", line):
            if heading:
                sections.append((heading, "\n".join(body)))
            heading, body = line.lstrip("#").strip(), []
        else:
            body.append(line)
    if heading:
        sections.append((heading, "\n".join(body)))
    table = {}
    for row in re.findall(r"^\|\s*`([\w.-]+)`\s*\|[^|]*\|([^|]+)\|", text, flags=re.M):
        table.setdefault(row[0], row[1].strip())
    return sections, table


def statement_text(check_id: str, document: str | Path | None = None) -> Statement | None:
    """The statement of ``check_id`` in ``document`` (default :data:`STATEMENTS_DOCUMENT`), or None.

    The section is the first whose heading names the id or the statement (``Theorem 3.1(a)``), else the
    first whose body names the check's folder (``statements/thm_3_1a/``) or module (``thm_3_1a.py``); the
    formula is the id's row of the document's table (a ``| `id` | kind | statement | ...`` row). Point
    ``document`` at another file with the same conventions to read the statements from there.
    """
    path = Path(document) if document is not None else STATEMENTS_DOCUMENT
    if not path.is_file():
        return None
    sections, table = _sections(str(path), path.stat().st_mtime)
    patterns = [re.compile(p) for p in _aliases(check_id)]
    found = next(((h, b) for h, b in sections if any(p.search(h) for p in patterns)), None)
    module = re.escape(check_id.replace("-", "_").replace(".", "_"))
    if found is None:
        found = next(((h, b) for h, b in sections if re.search(rf"\b{module}(?:/|\.py\b)", b)), None)
    if found is None and check_id not in table:
        return None
    title, body = found if found is not None else (check_id, "")
    words = []
    for paragraph in re.split(r"\n\s*\n", body.strip()):
        if paragraph.lstrip().startswith(("- ", "* ", "|", "#")):
            break
        words.append(paragraph.strip())
    return Statement(title=title, words="\n\n".join(words), maths=table.get(check_id, ""))


def markdown_inline(text: str) -> str:
    """The inline Markdown of the statements document as HTML: `code` (the maths), **bold**, *italic*, links' text."""
    out = []
    for i, part in enumerate(re.split(r"(`[^`]*`)", text)):
        if i % 2:
            out.append(f'<code class="m">{html.escape(part[1:-1])}</code>')
            continue
        part = html.escape(part)
        part = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", part)
        part = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", part)
        part = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", part)  # no links out of the page
        out.append(part.replace("&amp;#124;", "|"))
    return "".join(out)


def markdown_paragraphs(text: str) -> str:
    return "".join(f"<p>{markdown_inline(p)}</p>" for p in re.split(r"\n\s*\n", text) if p.strip())


# ------------------------------------------------------------------------------------------------ numbers


def number(value: Any) -> str:
    """A figure for a table cell: 4 significant digits, exponent form outside [1e-3, 1e4); strings as they are."""
    if value is None:
        return "–"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "∞" if value > 0 else "−∞" if value < 0 else "NaN"
        if value == 0 or 1e-3 <= abs(value) < 1e4:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return html.escape(str(value))


def _as_float(value: Any) -> float | None:
    """A report number (JSON writes non-finite floats as strings) as a float, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    return None


def _matrix(value: Any) -> list[list[float]] | None:
    """``value`` as a rectangular 2-D list of numbers, else None."""
    if not (isinstance(value, list) and value and all(isinstance(r, list) and r for r in value)):
        return None
    if len({len(r) for r in value}) != 1:
        return None
    rows = [[_as_float(x) for x in r] for r in value]
    return rows if all(x is not None for r in rows for x in r) else None


# ------------------------------------------------------------------------------------------------ plots


def plots_available() -> bool:
    """Whether matplotlib (the ``plots`` extra) can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def preload() -> None:
    """Imports matplotlib's figure and SVG backend and draws one empty figure (fonts loaded, caches warm).

    ``iclkd verify --html`` calls it in a background thread while the checks run, so that writing the
    page later costs only its plots; without matplotlib it does nothing.
    """
    try:
        fig, _ = _figure(1.0, 1.0)
        svg(fig, "preload")
    except ImportError:
        pass


def _figure(width: float = 5.6, height: float = 2.6, ncols: int = 1, *, bottom: float = 0.5, top: float = 0.3,
            right: float = 0.15):
    """A matplotlib figure outside pyplot (no global state, no GUI backend), with its axes.

    The margins are fixed in inches (``bottom``, ``top``; 0.75 in left for the tick labels and the axis label)
    instead of a layout engine: constrained layout measured every text twice and took half of a page's time.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.75 / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=0.9 / (width / ncols))
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.tick_params(labelsize=7)
        ax.grid(True, linewidth=0.3, alpha=0.5)
        for axis in (ax.xaxis, ax.yaxis):  # every tick is a few artists: few ticks, few artists to lay out
            axis.set_major_locator(MaxNLocator(nbins=6))
    return fig, list(axes)


def _log_scale(ax, which: str = "y") -> None:
    """A log axis labelled in plain numbers (``1e+03``): the default mathtext labels take most of a plot's time."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis.set_major_locator(LogLocator(numticks=8))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}" if v >= 1e4 or v < 1e-2 else f"{v:g}"))
    axis.set_minor_locator(NullLocator())


def svg(fig, salt: str) -> str:
    """``fig`` as an inline ``<svg>`` element that scales with its container (text as text, in the page's font)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt, "font.size": 8}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    # the viewBox keeps the aspect ratio; the width follows the card
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 width="100%"', text, count=1)


def plot_case_quantiles(q: Mapping) -> Any:
    """The empirical distribution over cases of the judged figure (101 quantiles), with its limit."""
    values = [v for v in (_as_float(x) for x in q.get("values", [])) if v is not None and math.isfinite(v)]
    if len(values) < 2:
        return None
    fig, (ax,) = _figure()
    percent = [100 * i / (len(values) - 1) for i in range(len(values))]
    ax.plot(values, percent, drawstyle="steps-post", color="#1f5fa8", linewidth=1.4)
    limit = _as_float(q.get("limit"))
    if limit is not None and math.isfinite(limit):
        ax.axvline(limit, color="#b3261e", linewidth=1, linestyle="--", label=f"limit {number(limit)}")
        ax.legend(fontsize=7, loc="lower right")
    positive = [v for v in values if v > 0]
    if len(positive) == len(values) and max(values) / min(values) > 1e3:
        _log_scale(ax, "x")
    ax.set_xlabel(str(q.get("measure", "per case")), fontsize=8)
    ax.set_ylabel("% of cases ≤ x", fontsize=8)
    ax.set_ylim(0, 100)
    return fig


def plot_linear_growth(growth: Mapping) -> Any:
    """Growth exponents of ||ΔW|| and MMD at t -> 0 and the slope ratios, each a mean with its 95 % interval."""
    families = [name for name, g in growth.items() if isinstance(g, Mapping) and "exponent_dw" in g]
    if not families:
        return None
    fig, (left, right) = _figure(5.6, 2.8, ncols=2, bottom=0.6, right=0.4)
    for offset, (key, label, colour) in zip((-0.12, 0.12), (("exponent_dw", "‖ΔW‖", "#1f5fa8"),
                                                             ("exponent_mmd", "MMD", "#e07b00")), strict=False):
        mean = [growth[f][key][0] for f in families]
        err = [[growth[f][key][0] - growth[f][key][1] for f in families],
               [growth[f][key][2] - growth[f][key][0] for f in families]]
        left.errorbar([i + offset for i in range(len(families))], [m - 1 for m in mean], yerr=err, fmt="o",
                      color=colour, markersize=3, capsize=2, label=label)
    left.axhline(0, color="k", linewidth=0.6)
    left.set_ylabel("growth exponent − 1", fontsize=8)
    left.legend(fontsize=7)
    ratio = [growth[f]["slope_ratio_observed_over_bound"] for f in families]
    right.errorbar(range(len(families)), [r[0] for r in ratio],
                   yerr=[[r[0] - r[1] for r in ratio], [r[2] - r[0] for r in ratio]], fmt="s", color="#2e7d32",
                   markersize=3, capsize=2)
    right.axhline(1, color="#b3261e", linewidth=1, linestyle="--")
    right.set_ylabel("slope ‖ΔW‖ / slope of bound", fontsize=8)
    for ax in (left, right):
        ax.set_xticks(range(len(families)), [f.replace(" (", "\n(") for f in families], fontsize=7)
    return fig


def plot_per_kernel(per_kernel: Mapping, threshold: Any) -> Any:
    """conj-4.1's supremum of c_hat per kernel (log scale; an infinite c_hat drawn at the top), refuted in red."""
    names = [k for k, v in per_kernel.items() if isinstance(v, Mapping) and "sup_c_hat" in v]
    if not names:
        return None
    values = [_as_float(per_kernel[k]["sup_c_hat"]) for k in names]
    finite = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    limit = _as_float(threshold)
    top = max(finite + ([limit] if limit else [])) * 30 if finite else 1e4
    heights = [v if v is not None and math.isfinite(v) and v > 0 else top for v in values]
    colours = ["#b3261e" if per_kernel[k].get("refuted") else "#2e7d32" for k in names]
    fig, (ax,) = _figure(5.6, 3.0, bottom=0.9)
    ax.bar(range(len(names)), heights, color=colours)
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            ax.text(i, top, "∞", ha="center", va="bottom", fontsize=9)
    if limit:
        ax.axhline(limit, color="k", linewidth=0.8, linestyle="--", label=f"threshold {number(limit)}")
        ax.legend(fontsize=7)
    _log_scale(ax)
    ax.set_ylabel("sup ĉ = ‖ΔW‖ / MMD_k0", fontsize=7)
    ax.set_xticks(range(len(names)), [n.replace(" (", "\n(") for n in names], rotation=30, ha="right", fontsize=7)
    return fig


def plot_slopes(slopes: Mapping) -> Any:
    """Log-log slopes of the random-feature error against m, ± 2 standard errors, against the predicted -1/2."""
    names = [k for k, v in slopes.items() if isinstance(v, list) and len(v) == 2]
    if not names:
        return None
    fig, (ax,) = _figure(5.6, 2.6, bottom=0.55)
    ax.errorbar(range(len(names)), [slopes[k][0] for k in names], yerr=[2 * slopes[k][1] for k in names], fmt="o",
                color="#1f5fa8", markersize=3, capsize=2)
    ax.axhline(-0.5, color="#b3261e", linewidth=1, linestyle="--", label="−1/2")
    ax.set_ylabel("slope of log RMS error vs log m", fontsize=7)
    ax.set_xticks(range(len(names)), [n.replace("@", "\n") for n in names], fontsize=6)
    ax.legend(fontsize=7)
    return fig


def plot_settings(settings: Sequence) -> Any:
    """thm-3.2 per law: the bound, the (1-δ)-quantile of the supremum gap and its largest value."""
    rows = [s for s in settings if isinstance(s, Mapping) and {"bound", "quantile_gap", "max_gap"} <= set(s)]
    if not rows:
        return None
    fig, (ax,) = _figure(5.6, 2.8, bottom=0.55)
    width = 0.26
    for j, (key, label, colour) in enumerate((("bound", "bound", "#b3261e"), ("quantile_gap", "(1−δ)-quantile gap",
                                                                               "#1f5fa8"),
                                              ("max_gap", "largest gap", "#7aa6d6"))):
        ax.bar([i + (j - 1) * width for i in range(len(rows))], [r[key] for r in rows], width, label=label,
               color=colour)
    labels = [f"{r.get('setting', i)}" + (f"\nN={r['N']}" if "N" in r else "") for i, r in enumerate(rows)]
    ax.set_xticks(range(len(rows)), labels, fontsize=6)
    ax.set_ylabel("sup_W [L − L̂_N]", fontsize=8)
    ax.legend(fontsize=7)
    return fig


def plot_rate(figures: Mapping) -> Any:
    """conj-3.2: the deviation (and gap) quantile against N, log-log, with the theorem's deviation term."""
    n = figures.get("N")
    if not isinstance(n, list) or not isinstance(figures.get("deviation_quantile"), list):
        return None
    fig, (ax,) = _figure(5.6, 2.6)
    for key, label, style in (("deviation_quantile", "deviation quantile", "o-"), ("gap_quantile", "gap quantile", "s-"),
                              ("theorem_deviation_term", "theorem's √(log(1/δ)/2N) term", "k--")):
        if isinstance(figures.get(key), list):
            ax.plot(n, figures[key], style, markersize=3, linewidth=1, label=label)
    _log_scale(ax, "x")
    _log_scale(ax)
    ax.set_xlabel("N", fontsize=8)
    slope = _as_float(figures.get("slope"))
    if slope is not None:
        ax.set_title(f"fitted slope {slope:.2f}", fontsize=8)
    ax.legend(fontsize=7)
    return fig


def _heatmap_arrays(figures: Mapping) -> list[tuple[str, list[list[float]], bool]]:
    """``(name, layer x head matrix, is_ratio)`` for the layer x head arrays of a real-model check."""
    out = []
    for name, value in figures.items():
        if not (name.startswith(("per_layer_head_", "per_head_")) or name == "ratio_by_layer_head_pair"):
            continue
        if "error" not in name and "ratio" not in name:
            continue
        if isinstance(value, list) and value and isinstance(value[0], list) and value[0] \
                and isinstance(value[0][0], list):  # layer x head x pair: the worst pair
            value = [[max(_as_float(x) for x in cell) for cell in row] for row in value]
        matrix = _matrix(value)
        if matrix is not None and len(matrix) >= 2 and len(matrix[0]) >= 2:
            out.append((name, matrix, "ratio" in name))
    return out


def plot_heatmap(name: str, matrix: list[list[float]], is_ratio: bool, layers: Sequence | None) -> Any:
    """One real-model figure over layers x heads: an error on a log10 scale, a bound's ratio as tightness 1/ratio."""
    import numpy as np

    data = np.asarray(matrix, dtype=float)
    if is_ratio:
        data = np.where(data > 0, 1.0 / np.where(data > 0, data, 1.0), np.inf)
        label = "tightness = bound / observed"
    else:
        data = np.log10(np.maximum(data, 1e-300))
        label = "log10 " + name.replace("per_layer_head_", "").replace("per_head_", "").replace("_", " ")
    fig, (ax,) = _figure(5.6, min(6.0, 1.2 + 0.16 * data.shape[0]), bottom=0.5, top=0.3)
    ax.grid(False)
    image = ax.imshow(data, aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.9).ax.tick_params(labelsize=7)
    ax.set_xlabel("head", fontsize=8)
    ax.set_ylabel("layer", fontsize=8)
    if layers is not None and len(layers) == data.shape[0] and data.shape[0] <= 12:
        ax.set_yticks(range(len(layers)), [str(x) for x in layers])
    ax.set_title(label, fontsize=8)
    return fig


def plot_worst(check: Mapping) -> Any:
    """The headline when nothing per case was recorded: worst / tolerance as one bar against 1."""
    worst, tolerance = _as_float(check.get("worst")), _as_float(check.get("tolerance"))
    if worst is None or not tolerance or not math.isfinite(worst) or worst < 0:
        return None
    fig, (ax,) = _figure(5.6, 1.1, bottom=0.5, top=0.1)
    ax.barh([0], [worst / tolerance], color="#b3261e" if worst > tolerance else "#2e7d32", height=0.5)
    ax.axvline(1, color="k", linewidth=1, linestyle="--")
    ax.set_yticks([])
    ax.set_xlim(0, max(1.1, 1.05 * worst / tolerance))
    ax.set_xlabel(f"worst / tolerance ({check.get('worst_label', '')})", fontsize=7)
    return fig


def check_plots(check: Mapping) -> list[tuple[str, Any]]:
    """``(caption, matplotlib figure)`` for what ``check`` measured (module docstring: chosen by its figures)."""
    f = check.get("figures") or {}
    plots: list[tuple[str, Any]] = []

    def add(caption: str, make: Callable[[], Any]) -> None:
        fig = make()
        if fig is not None:
            plots.append((caption, fig))

    if isinstance(f.get("per_case_quantiles"), Mapping):
        add("distribution over cases of " + str(f["per_case_quantiles"].get("measure", "the judged figure")),
            lambda: plot_case_quantiles(f["per_case_quantiles"]))
    if isinstance(f.get("linear_growth"), Mapping):
        add("growth at t → 0: exponents (should be 1) and slope ratios (≤ 1), 95 % intervals",
            lambda: plot_linear_growth(f["linear_growth"]))
    if isinstance(f.get("per_kernel"), Mapping):
        add("largest ĉ found per kernel (red: refuted)", lambda: plot_per_kernel(f["per_kernel"], f.get("threshold")))
    if isinstance(f.get("slopes_[value,se]"), Mapping):
        add("error slopes against m, ± 2 s.e.", lambda: plot_slopes(f["slopes_[value,se]"]))
    if isinstance(f.get("settings"), list):
        add("bound against the measured supremum gap, per law", lambda: plot_settings(f["settings"]))
    if "deviation_quantile" in f:
        add("deviation against N", lambda: plot_rate(f))
    layers = f.get("layers") if isinstance(f.get("layers"), list) else None
    for name, matrix, is_ratio in _heatmap_arrays(f):
        what = "tightness (bound / observed)" if is_ratio else "log10 of the error"
        add(f"{what} per layer × head ({name}{', worst pair' if name.endswith('_pair') else ''})",
            lambda n=name, m=matrix, r=is_ratio: plot_heatmap(n, m, r, layers))
    if not plots:
        add("worst figure against its tolerance", lambda: plot_worst(check))
    return plots


# ------------------------------------------------------------------------------------------------ page parts


CSS = """
:root{--fg:#1b1f24;--muted:#5b6570;--line:#d8dde3;--card:#fff;--bg:#f4f6f8;
--holds:#1e7b34;--survives:#0f6f73;--refuted:#9a5b00;--violated:#b3261e;--error:#6d0f0a;--inconclusive:#5b6570}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--fg);background:var(--bg)}
main{max-width:1400px;margin:0 auto;padding:16px}
h1{font-size:1.35rem;margin:0 0 6px}
h2{font-size:1.05rem;margin:0}
.banner{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;margin-bottom:16px}
.counts{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0}
.count{border-radius:999px;padding:3px 12px;color:#fff;font-weight:600;font-size:.9rem}
.meta{color:var(--muted);font-size:.85rem;overflow-wrap:anywhere}
.note{background:#fff6d6;border:1px solid #e8d48a;border-radius:6px;padding:6px 10px;font-size:.88rem}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,600px),1fr));gap:16px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;min-width:0}
.card header{display:flex;flex-wrap:wrap;align-items:baseline;gap:8px;margin-bottom:6px}
.badge{border-radius:6px;padding:1px 8px;color:#fff;font-weight:600;font-size:.85rem}
.kind{color:var(--muted);font-size:.85rem}
.holds{background:var(--holds)}.survives{background:var(--survives)}.refuted{background:var(--refuted)}
.violated{background:var(--violated)}.error{background:var(--error)}.inconclusive{background:var(--inconclusive)}
.caught{color:var(--holds);font-weight:600}.missed{color:var(--violated);font-weight:600}
.statement{font-size:.92rem}.statement p{margin:4px 0}
.maths{background:#f0f3f7;border-radius:6px;padding:6px 8px;margin:6px 0;overflow-x:auto}
code.m{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em}
.summary{font-size:.9rem;margin:6px 0;overflow-wrap:anywhere}
table{border-collapse:collapse;font-size:.82rem;margin:6px 0}
td,th{border:1px solid var(--line);padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f0f3f7;font-weight:600}
td.n{text-align:right;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.facts td:first-child{color:var(--muted);white-space:nowrap}.facts td:last-child{overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%}
figure{margin:8px 0}figure svg{display:block;max-width:100%;height:auto}
figcaption{color:var(--muted);font-size:.8rem}
details{margin:6px 0}summary{cursor:pointer;font-weight:600;font-size:.9rem}
nav a{margin-right:12px}
@media (max-width:600px){main{padding:8px}.card{padding:10px}body{font-size:14px}}
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _badge(status: str) -> str:
    return f'<span class="badge {_e(status)}">{_e(status)}</span>'


def facts_table(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table of ``(label, HTML)`` rows."""
    body = "".join(f"<tr><td>{_e(label)}</td><td>{value}</td></tr>" for label, value in rows)
    return f'<table class="facts">{body}</table>'


def value_table(value: Any, *, max_rows: int = 12, max_cols: int = 12, vector: bool = False) -> str:
    """A small table of one input: a matrix (rows x columns), a vector, a scalar or a nested record."""
    matrix = _matrix(value)
    if matrix is not None:
        rows = matrix[:max_rows]
        cells = "".join("<tr>" + "".join(f'<td class="n">{number(x)}</td>' for x in r[:max_cols]) + "</tr>"
                        for r in rows)
        shape = f"vector of {len(matrix[0])}" if vector else f"{len(matrix)} × {len(matrix[0])}"
        cut = " (first rows and columns shown)" if len(matrix) > max_rows or len(matrix[0]) > max_cols else ""
        return f'<div class="scroll"><table title="{shape}">{cells}</table></div><div class="meta">{shape}{cut}</div>'
    if isinstance(value, list) and value and all(_as_float(x) is not None for x in value):
        return value_table([value], max_rows=max_rows, max_cols=max_cols, vector=True)
    if isinstance(value, Mapping):
        return record_table(value)
    if isinstance(value, float) or _as_float(value) is not None:
        return f'<span class="n">{number(_as_float(value))}</span>'
    text = json.dumps(value) if not isinstance(value, str) else value
    return _e(text if len(text) < 400 else text[:400] + " …")


def record_table(record: Mapping) -> str:
    """A counterexample or worst case as a table: one row per input, each input as a small table."""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{value_table(v)}</td></tr>" for k, v in record.items())
    return f'<div class="scroll"><table>{rows}</table></div>'


def certificate_block(certificate: Mapping) -> str:
    """A certificate's status and reason, and its claims with the enclosures and the widths of their balls."""
    colour = {"proven": "holds", "violation proven": "violated"}.get(certificate.get("status"), "inconclusive")
    head = (f'<p><span class="badge {colour}">certificate</span> '
            f"<strong>{_e(certificate.get('status', ''))}</strong> at {_e(certificate.get('precision_bits', '?'))} bits: "
            f"{_e(certificate.get('reason', ''))}</p>")
    claims = certificate.get("claims") or []
    if not claims:
        return head
    rows = "".join(
        f"<tr><td>{_e(c.get('claim', ''))}</td><td>{_e(c.get('status', ''))}</td><td>{_e(c.get('lhs', ''))}</td>"
        f"<td>{_e(c.get('rhs', ''))}</td><td class=n>{number(_as_float(c.get('lhs_relative_radius')))}</td>"
        f"<td class=n>{number(_as_float(c.get('rhs_relative_radius')))}</td></tr>" for c in claims)
    return (head + '<div class="scroll"><table><tr><th>claim lhs ≤ rhs</th><th>status</th><th>lhs ball</th>'
            '<th>rhs ball</th><th>lhs width (rel.)</th><th>rhs width (rel.)</th></tr>' + rows + "</table></div>")


def mutants_table(outcomes: Sequence[Mapping]) -> str:
    rows = "".join(
        f"<tr><td>{_e(o['mutant'])}</td><td>{_e(o.get('description', ''))}</td>"
        f"<td>{_e(o.get('baseline_status', ''))} → {_e(o.get('mutant_status', ''))}</td>"
        f"<td class={'caught' if o.get('caught') else 'missed'}>{'caught' if o.get('caught') else 'MISSED'}</td></tr>"
        for o in outcomes)
    caught = sum(bool(o.get("caught")) for o in outcomes)
    return (f"<p><strong>{caught}/{len(outcomes)}</strong> mutants caught</p><div class=scroll><table><tr><th>mutant</th>"
            f"<th>the planted bug</th><th>verdict</th><th></th></tr>{rows}</table></div>")


def figures_html(plots: Sequence[tuple[str, Any]], salt: str) -> str:
    out = []
    for i, (caption, fig) in enumerate(plots):
        out.append(f'<figure class="plot">{svg(fig, f"{salt}-{i}")}<figcaption>{_e(caption)}</figcaption></figure>')
    return "".join(out)


def statement_html(check_id: str, statements: str | Path | None, title: str | None) -> str:
    """The card's statement: its section of the statements document (a real-model check ``ID@MODEL``: the section
    of ``ID``), else the sentence the registered check states (:meth:`Check.stated
    <verification.core.model.Check.stated>`) above its title."""
    statement = statement_text(check_id, statements)
    if statement is None and "@" in check_id:  # a statement of the suite on a real model
        statement = statement_text(check_id.partition("@")[0], statements)
    if statement is None:
        check = REGISTRY.get(check_id)
        stated = check.stated() if check is not None else ""
        title = title if title is not None or check is None else check.title
        parts = ([f"<p><strong>{markdown_inline(stated)}</strong></p>"] if stated else []) + \
            ([f"<p>{_e(title)}</p>"] if title else [])
        return f'<div class="statement">{"".join(parts)}</div>' if parts else ""
    maths = f'<div class="maths">{markdown_inline(statement.maths)}</div>' if statement.maths else ""
    return (f'<div class="statement"><p><strong>{markdown_inline(statement.title)}</strong></p>{maths}'
            f"{markdown_paragraphs(statement.words)}</div>")


def check_card(check: Mapping, *, statements: str | Path | None = None, title: str | None = None,
               mutants: Sequence[Mapping] | None = None, plots: bool = True) -> str:
    """One card: the statement, the verdict and its figures, the counterexample, certificate, mutants and plots."""
    cid = str(check["id"])
    tolerance = check.get("tolerance")
    facts = [("cases", number(check.get("cases"))),
             ("worst", f"{number(_as_float(check.get('worst')))} <span class=meta>{_e(check.get('worst_label', ''))}</span>"),
             ("tolerance", number(_as_float(tolerance)) if tolerance is not None else "–"),
             ("tightness", number(_as_float(check.get("tightness")))),
             ("tolerance reason", _e(check.get("tolerance_reason") or "–")),
             ("time", f"{_as_float(check.get('elapsed_s')) or 0:.2f} s")]
    parts = [f'<article class="card" id="{_e(cid)}" data-status="{_e(check.get("status", ""))}">',
             f'<header><h2>{_e(cid)}</h2><span class="kind">{_e(check.get("kind", ""))}</span>'
             f'{_badge(str(check.get("status", "")))}</header>',
             statement_html(cid, statements, title),
             f'<p class="summary">{_e(check.get("summary", ""))}</p>', facts_table(facts)]
    if plots:
        parts.append(figures_html(check_plots(check), cid))
    if check.get("counterexample"):
        parts.append(f"<details open><summary>counterexample</summary>{record_table(check['counterexample'])}</details>")
    if check.get("certificate"):
        parts.append(f"<details open><summary>certificate</summary>{certificate_block(check['certificate'])}</details>")
    if mutants:
        parts.append(f"<details open><summary>mutants</summary>{mutants_table(mutants)}</details>")
    if check.get("status") == "error" and (check.get("figures") or {}).get("traceback"):
        parts.append(f"<details><summary>traceback</summary><pre>{_e(check['figures']['traceback'])}</pre></details>")
    parts.append("</article>")
    return "".join(parts)


def sibling_pages(folder: Path, exclude: Path | None = None) -> list[tuple[str, str, str]]:
    """``(file name, kind, title)`` of the iclkd pages in ``folder`` (their ``<meta name="iclkd-page">``)."""
    out = []
    for path in sorted(folder.glob("*.html")):
        if exclude is not None and path.resolve() == exclude.resolve():
            continue
        try:
            head = path.read_text(encoding="utf-8", errors="replace")[:4096]
        except OSError:
            continue
        kind = re.search(rf'<meta name="{PAGE_META}" content="([^"]*)"', head)
        title = re.search(r"<title>(.*?)</title>", head, flags=re.S)
        if kind:
            out.append((path.name, html.unescape(kind.group(1)), html.unescape(title.group(1)) if title else path.name))
    return out


def page(*, kind: str, title: str, banner: str, body: str, links: Sequence[tuple[str, str, str]] = (),
         plots: bool = True) -> str:
    """A whole page: the inline CSS, the banner, links to sibling pages, the body; no script, nothing external."""
    nav = ""
    if links:
        nav = "<nav>see also: " + "".join(f'<a href="{_e(name)}">{_e(t)}</a>' for name, _, t in links) + "</nav>"
    note = "" if plots else ('<p class="note">Plots are not included: matplotlib is not installed '
                             "(pip install 'iclkd-jax[plots]').</p>")
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="{PAGE_META}" content="{_e(kind)}"><title>{_e(title)}</title>'
            '<link rel="icon" href="data:,">'
            f"<style>{CSS}</style></head><body><main>"
            f'<section class="banner"><h1>{_e(title)}</h1>{banner}{nav}{note}</section>{body}</main></body></html>\n')


def _versions(versions: Mapping) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def _counts(statuses: Sequence[str]) -> str:
    chips = [f'<span class="count {s}">{statuses.count(s)} {s}</span>' for s in VERDICTS
             if statuses.count(s) or s in ("holds", "violated", "refuted", "survives", "error")]
    return f'<div class="counts">{"".join(chips)}</div>'


def verify_page(report: Mapping, *, statements: str | Path | None = None, titles: Mapping[str, str] | None = None,
                mutants: Sequence[Mapping] | None = None, links: Sequence[tuple[str, str, str]] = (),
                plots: bool | None = None) -> str:
    """The page of ``iclkd verify``: ``report`` is the JSON report's dict; ``mutants`` the self-test's outcomes
    (``check_id, mutant, description, baseline_status, mutant_status, caught``), shown on their checks' cards."""
    plots = plots_available() if plots is None else plots
    checks = list(report.get("checks", []))
    by_check: dict[str, list[Mapping]] = {}
    for o in mutants or ():
        by_check.setdefault(o["check_id"], []).append(o)
    certificates = [c["certificate"]["status"] for c in checks if c.get("certificate")]
    cert = ""
    if certificates:
        cert = "<p>certificates: " + ", ".join(f"{certificates.count(s)} {_e(s)}" for s in dict.fromkeys(certificates)) \
               + "</p>"
    total = sum(_as_float(c.get("elapsed_s")) or 0.0 for c in checks)
    banner = (_counts([str(c.get("status")) for c in checks])
              + f'<p class="meta">profile <strong>{_e(report.get("profile"))}</strong>, seed <strong>'
                f'{_e(report.get("seed"))}</strong>, {len(checks)} checks in {total:.1f} s; '
                f'{_e(_versions(report.get("versions", {})))}</p>' + cert)
    cards = [check_card(c, statements=statements, title=(titles or {}).get(c["id"]), mutants=by_check.get(c["id"]),
                        plots=plots) for c in checks]
    title = f"iclkd verify — profile {report.get('profile')}, seed {report.get('seed')}"
    return page(kind="verify", title=title, banner=banner, body=f'<div class="cards">{"".join(cards)}</div>',
                links=links, plots=plots)


def self_test_page(report: Mapping, *, statements: str | Path | None = None,
                   titles: Mapping[str, str] | None = None, links: Sequence[tuple[str, str, str]] = ()) -> str:
    """The page of ``iclkd verify --self-test``: ``report`` is its JSON dict (``profile, seed, mutants``);
    one card per check with its statement and the verdict of each of its mutants."""
    outcomes = list(report.get("mutants", []))
    by_check: dict[str, list[Mapping]] = {}
    for o in outcomes:
        by_check.setdefault(o["check_id"], []).append(o)
    caught = sum(bool(o.get("caught")) for o in outcomes)
    banner = (f'<div class="counts"><span class="count holds">{caught} caught</span><span class="count violated">'
              f'{len(outcomes) - caught} missed</span></div><p class="meta">profile <strong>{_e(report.get("profile"))}'
              f'</strong>, seed <strong>{_e(report.get("seed"))}</strong>; '
              f'{_e(_versions(report.get("versions", {})))}</p>')
    cards = []
    for cid, rows in by_check.items():
        status = "holds" if all(o.get("caught") for o in rows) else "violated"
        cards.append(f'<article class="card" id="{_e(cid)}" data-status="{status}"><header><h2>{_e(cid)}</h2>'
                     f'<span class="kind">baseline {_e(rows[0].get("baseline_status", ""))}</span></header>'
                     f"{statement_html(cid, statements, (titles or {}).get(cid))}{mutants_table(rows)}</article>")
    title = f"iclkd verify --self-test — profile {report.get('profile')}, seed {report.get('seed')}"
    return page(kind="self-test", title=title, banner=banner, body=f'<div class="cards">{"".join(cards)}</div>',
                links=links, plots=True)


def figures_page(*, kind: str, title: str, meta: str, sections: Sequence[tuple[str, str, Sequence[tuple[str, Any]]]],
                 links: Sequence[tuple[str, str, str]] = (), plots: bool = True) -> str:
    """A page of figures (``iclkd bench tightness``, ``iclkd search``): one card per ``(heading, HTML, plots)``."""
    cards = []
    for i, (heading, text, figs) in enumerate(sections):
        cards.append(f'<article class="card" id="s{i}"><header><h2>{_e(heading)}</h2></header>{text}'
                     f"{figures_html(figs, f'{kind}-{i}') if plots else ''}</article>")
    banner = f'<p class="meta">{meta}</p>'
    return page(kind=kind, title=title, banner=banner, body=f'<div class="cards">{"".join(cards)}</div>',
                links=links, plots=plots)


def write_page(path: str | Path, text: str) -> Path:
    """Writes a page atomically (:func:`verification.core.outputs.write_atomic`)."""
    return write_atomic(path, text)


# ------------------------------------------------------------------------------------ benchmark and search pages


def png_figure(path: str | Path) -> str:
    """A PNG file as an inline ``<svg>``-free figure body: an ``<img>`` with a data URI (nothing fetched)."""
    import base64

    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{_e(Path(path).stem)}" src="data:image/png;base64,{data}" style="max-width:100%;height:auto">'


def rows_table(rows: Sequence[Mapping], columns: Sequence[str]) -> str:
    """Report rows as an HTML table of the given columns (numbers formatted, missing cells blank)."""
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(
        f'<td class="n">{number(r.get(c))}</td>' if isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool)
        else f"<td>{_e('' if r.get(c) is None else r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


#: the columns of the tightness page's tables
TIGHTNESS_COLUMNS = ("parameter", "value", "quantity", "bound", "observed", "observed_lo", "observed_hi", "ratio")


def tightness_page(doc: Mapping, folder: str | Path) -> str:
    """The page of ``iclkd bench tightness --html``: ``doc`` is its ``tightness.json``; the PNGs it lists under
    ``figures`` are read from ``folder`` and inlined. One card per statement: its slopes, rows and figure."""
    meta, rows, slopes = doc.get("meta", {}), doc.get("rows", []), doc.get("slopes", {})
    sections = []
    for theorem in dict.fromkeys(r["theorem"] for r in rows):
        fits = [{"fit": f"{name}: {s['y']} vs {s['x']}", "slope": s["slope"], "95% lo": s["slope_lo"],
                 "95% hi": s["slope_hi"], "bound/predicted": s.get("bound_slope", s.get("predicted_slope"))}
                for name, s in slopes.items() if name.split(" (")[0] == theorem]
        text = statement_html(theorem, None, None)
        if fits:
            text += rows_table(fits, ("fit", "slope", "95% lo", "95% hi", "bound/predicted"))
        text += rows_table([r for r in rows if r["theorem"] == theorem], TIGHTNESS_COLUMNS)
        png = Path(folder) / f"{theorem}.png"
        if f"{theorem}.png" in (doc.get("figures") or []) and png.is_file():
            text += f'<figure class="plot">{png_figure(png)}<figcaption>{_e(theorem)}: bound against observed'\
                    f"</figcaption></figure>"
        sections.append((theorem, text, []))
    info = (f"{_e(meta.get('cells', '?'))} cells, mode {_e(meta.get('mode', '?'))}, seed {_e(meta.get('seed', '?'))}, "
            f"{_e(meta.get('rows_bound_below_observed', '?'))} rows of proven statements with bound &lt; observed; "
            f"jax {_e(meta.get('jax', '?'))}")
    plotted = bool(doc.get("figures"))
    return figures_page(kind="tightness", title="iclkd bench tightness", meta=info, sections=sections,
                        plots=plotted)


def plot_search(target: Mapping) -> Any:
    """Best ratio so far against evaluations: gradient ascent and random search at the same budget."""
    trajectory, random = target.get("trajectory") or [], target.get("random_trajectory") or []
    if not trajectory:
        return None
    restarts = int(target.get("restarts") or 1)
    fig, (ax,) = _figure(5.6, 2.6)
    evaluations = [restarts * (i + 1) for i in range(len(trajectory))]
    ax.plot(evaluations, [_as_float(v) for v in trajectory], label="gradient (Adam)", color="#1f5fa8")
    if random:
        ax.plot(evaluations[:len(random)], [_as_float(v) for v in random], label="random", linestyle="--",
                color="#e07b00")
    bound = _as_float(target.get("bound"))
    if bound is not None and math.isfinite(bound):
        ax.axhline(bound, color="#b3261e", linewidth=1, label=f"bound {number(bound)}")
    values = [v for v in (_as_float(x) for x in trajectory + random) if v is not None and math.isfinite(v) and v > 0]
    if values and max(values) / min(values) > 100:
        _log_scale(ax)
    ax.set_xlabel("evaluations", fontsize=8)
    ax.set_ylabel(str(target.get("ratio_label", "ratio")), fontsize=7)
    ax.legend(fontsize=7)
    return fig


def search_page(doc: Mapping, *, plots: bool | None = None) -> str:
    """The page of ``iclkd search --html``: ``doc`` is its JSON (``id, budget, seed, targets``); one card per
    target with the best ratio found by gradient ascent and by random search, the trajectory and the best case."""
    plots = plots_available() if plots is None else plots
    sections = []
    for name, t in (doc.get("targets") or {}).items():
        facts = facts_table([
            ("best ratio (gradient)", number(_as_float(t.get("best_ratio")))),
            ("best ratio (random)", number(_as_float(t.get("random_best_ratio")))),
            ("bound", number(_as_float(t.get("bound")))), ("ratio", _e(t.get("ratio_label", ""))),
            ("evaluations", f"{_e(t.get('evaluations'))} ({_e(t.get('restarts'))} restarts × {_e(t.get('steps'))} steps)"),
            ("agreement (search vs check)", number(_as_float(t.get("agreement"))))])
        text = f"<p>{_e(t.get('description', ''))}</p>{facts}"
        if t.get("best_case"):
            text += f"<details><summary>best case</summary>{record_table(t['best_case'])}</details>"
        figs = [("best ratio so far, gradient vs random", fig)] if plots and (fig := plot_search(t)) is not None else []
        sections.append((name, text, figs))
    info = f"target {_e(doc.get('id'))}, budget {_e(doc.get('budget'))} evaluations, seed {_e(doc.get('seed'))}"
    return figures_page(kind="search", title=f"iclkd search {doc.get('id', '')}", meta=info, sections=sections,
                        plots=plots)
