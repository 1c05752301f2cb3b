"""Experiment output: the result record, JSON/Markdown/PNG files (atomic writes), matplotlib on demand."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from experiments.configs import Options
from verification.core.outputs import atomic_path, jsonable, write_atomic


def pyplot():
    """``matplotlib.pyplot`` with the Agg backend, or a clear error (plots are the optional extra ``plots``)."""
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise RuntimeError("plots need matplotlib: pip install 'iclkd-jax[plots]' (or pass --no-plots)") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


@dataclasses.dataclass
class Result:
    """What an experiment produces: a JSON-able dict, a Markdown summary, figure builders ``name -> f(plt) -> fig``."""

    name: str
    data: dict[str, Any]
    markdown: str
    figures: dict[str, Callable[[Any], Any]] = dataclasses.field(default_factory=dict)


def write_outputs(result: Result, opts: Options, started: float) -> dict[str, Any]:
    """Writes ``<out>/<name>.json``, ``<out>/<name>.md``, ``<out>/<name>-*.png`` and the optional ``--json`` copy."""
    out = Path(opts.out)
    files = []
    if opts.plots and result.figures:
        plt = pyplot()
        for fig_name, build in result.figures.items():
            fig = build(plt)
            path = out / f"{result.name}-{fig_name}.png"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
            plt.close(fig)
            files.append(path.name)
    data = dict(result.data)
    data.update(experiment=result.name, quick=opts.quick, seed=opts.seed, task=opts.task, plots=files,
                wall_seconds=time.perf_counter() - started, jax_version=jax.__version__)
    data = jsonable(data)
    text = json.dumps(data, indent=2, allow_nan=False)
    write_atomic(out / f"{result.name}.json", text)
    md = result.markdown + "\n" + "".join(f"\n![{f}]({f})\n" for f in files)
    md += f"\n_wall time {data['wall_seconds']:.1f} s; quick={opts.quick}; seed={opts.seed}_\n"
    write_atomic(out / f"{result.name}.md", md)
    if opts.json_path is not None:
        write_atomic(opts.json_path, text)
    return data


def fmt_ci(value: float, ci) -> str:
    return f"{value:.4g} [{ci[0]:.4g}, {ci[1]:.4g}]"
