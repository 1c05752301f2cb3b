"""``iclkd experiment NAME [--quick] [--json PATH] [--out DIR] [--seed S] [--task T] [--no-plots]``.

Each experiment writes ``<out>/<name>.json``, ``<out>/<name>.md`` and PNG plots (atomically); trained
models are cached under ``<out>/cache`` (``.npz`` params + ``.json`` config and seed). ``--out``
defaults to ``iclkd-out/experiments`` (covered by .gitignore). Without matplotlib the plots are
skipped with a note and everything else is written. What each experiment measures and what it says
about docs/statements.md: docs/experiments.md.

:data:`EXPERIMENTS` is the registry behind ``iclkd experiment``: add an experiment by adding its line
(a one-line summary and the function that imports its module, which provides ``run(opts: Options) ->
Result`` and, optionally, ``add_arguments(parser)`` for flags of its own, read back from ``opts.args``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from types import ModuleType

from verification.core.outputs import DEFAULT_OUTPUT_ROOT
from verification.io.command import Command, Group, Parser, output_dir, output_file, seed

DEFAULT_OUT = DEFAULT_OUTPUT_ROOT / "experiments"
PLOTS_HINT = "pip install 'iclkd-jax[plots]'"


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One registered experiment: a one-line ``summary`` and ``load``, the function that imports its module
    (only when it runs: the models need Flax, the LLM experiments torch and transformers)."""

    summary: str
    load: Callable[[], ModuleType]


def _mmd_shift() -> ModuleType:
    from experiments import mmd_shift

    return mmd_shift


def _selection() -> ModuleType:
    from experiments import selection

    return selection


def _lr_proxy() -> ModuleType:
    from experiments import lr_proxy

    return lr_proxy


def _weight_norm() -> ModuleType:
    from experiments import weight_norm

    return weight_norm


def _multi_layer() -> ModuleType:
    from experiments import multi_layer

    return multi_layer


def _thm31_trained() -> ModuleType:
    from experiments import thm31_trained

    return thm31_trained


def _llm_mmd() -> ModuleType:
    from experiments import llm_mmd

    return llm_mmd


def _llm_order() -> ModuleType:
    from experiments import llm_order

    return llm_order


def _llm_selection() -> ModuleType:
    from experiments import llm_selection

    return llm_selection


EXPERIMENTS: dict[str, Experiment] = {
    "mmd-shift": Experiment("in-context error under shifted demonstrations against Theorems 4.1 and 4.2", _mmd_shift),
    "selection": Experiment("choosing demonstrations from a mixed-domain pool by MMD (Theorem 4.2)", _selection),
    "lr-proxy": Experiment("the learning-rate proxy eta = N/(2D') and entropy vs prediction sensitivity (Lemma)",
                           _lr_proxy),
    "weight-norm": Experiment("weight decay on W^V vs the generalisation gap across tasks (Theorem 3.2)", _weight_norm),
    "multi-layer": Experiment("are a k-layer model's predictions k KD steps? (Theorem 3.1, open question)",
                              _multi_layer),
    "thm31-trained": Experiment("Theorem 3.1(a) on trained one- and two-head models", _thm31_trained),
    "llm-mmd": Experiment("SmolLM2-135M: MMD(demonstrations, queries) vs in-context loss (Theorems 4.1/4.2)", _llm_mmd),
    "llm-order": Experiment("SmolLM2-135M: log D' and attention entropy vs sensitivity to demonstration order (Lemma)",
                            _llm_order),
    "llm-selection": Experiment("SmolLM2-135M: demonstrations chosen by MMD vs random vs nearest neighbours",
                                _llm_selection),
}


@dataclasses.dataclass(frozen=True)
class ExperimentCommand:
    """``iclkd experiment NAME``: the shared flags, the experiment's own, and the run (``name`` ``all``: all)."""

    name: str

    @property
    def names(self) -> list[str]:
        return sorted(EXPERIMENTS) if self.name == "all" else [self.name]

    def add_arguments(self, p: Parser) -> None:
        p.add_argument("--quick", action="store_true",
                       help="small models and samples (trains in < 2 min on 2 cores)")
        if self.name != "all":
            p.add_argument("--json", type=output_file, metavar="PATH", help="also write the JSON result here")
        p.add_argument("--out", type=output_dir, default=str(DEFAULT_OUT), metavar="DIR",
                       help=f"results, plots and the model cache (DIR/cache); default {DEFAULT_OUT}")
        p.add_argument("--seed", type=seed, default=0)
        p.add_argument("--task", choices=("regression", "classification"), default="regression")
        p.add_argument("--no-plots", action="store_true", help="skip the PNG plots (matplotlib not needed)")
        p.add_argument("--quiet", action="store_true", help="no progress lines")
        from verification.engine import journal

        journal.add_arguments(p, default="DIR/journal")
        for name in self.names:
            module = EXPERIMENTS[name].load()
            if hasattr(module, "add_arguments"):
                module.add_arguments(p)

    def run(self, args: argparse.Namespace) -> int:
        from experiments import common as C

        plots = not args.no_plots
        if plots:
            try:
                C.pyplot()
            except RuntimeError:
                plots = False
                print(f"iclkd experiment: matplotlib is not installed, so the plots are skipped (JSON and Markdown "
                      f"are written); {PLOTS_HINT} to get them", file=sys.stderr)
        from verification.engine import journal

        own = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in _NOT_ARGUMENTS}
        run_journal = journal.from_args(args, f"experiment {self.name}", own, selection={"experiments": self.names},
                                        default=args.out / "journal", prog=f"iclkd experiment {self.name}")

        def run_one(name: str) -> dict:
            opts = C.Options(quick=args.quick, seed=args.seed, out=args.out, json_path=getattr(args, "json", None),
                             plots=plots, task=args.task, verbose=not args.quiet)
            opts.args = args  # flags an experiment adds itself (add_arguments) are read from here
            started = time.perf_counter()
            module = EXPERIMENTS[name].load()
            result = module.run(opts)
            data = C.write_outputs(result, opts, started)
            print(f"{name}: wrote {args.out / (name + '.json')} ({data['wall_seconds']:.1f} s)")
            if not plots and result.figures and not args.no_plots:
                print(f"{name}: plots skipped: {', '.join(result.figures)} ({PLOTS_HINT})", file=sys.stderr)
            return data

        def reused(data: dict) -> dict:  # its files were written by the run that journaled it; the JSON again
            from verification.core.outputs import write_atomic

            text = json.dumps(data, indent=2, allow_nan=False)  # as experiments.output.write_outputs writes it
            write_atomic(args.out / f"{data['experiment']}.json", text)
            if getattr(args, "json", None) is not None:
                write_atomic(args.json, text)
            print(f"{data['experiment']}: reused from the journal ({args.out / (data['experiment'] + '.json')})")
            return data

        # one unit per experiment (and seed: the seed is an argument of every fingerprint)
        with journal.active(run_journal):
            for _ in journal.map_units(
                    self.names, run_one, journal=run_journal, decode=reused, collective=True,
                    unit_of=lambda name: journal.Unit(f"experiment/{name}", name,
                                                      scopes=(*journal.BASE_SCOPES, "experiments"))):
                pass
        return 0


#: flags of ``iclkd experiment`` that do not change a result (outputs, display, the journal's own)
_NOT_ARGUMENTS = ("json", "out", "no_plots", "quiet", "journal", "resume", "grace")


def _group() -> Group:
    commands = {name: Command(e.summary, ExperimentCommand(name), description=f"{e.summary} (docs/experiments.md)")
                for name, e in EXPERIMENTS.items()}
    commands["all"] = Command("every experiment in turn", ExperimentCommand("all"),
                              description="Every experiment in turn, each writing into --out.")
    return Group("trained-transformer experiments: " + ", ".join(EXPERIMENTS), commands, metavar="EXPERIMENT",
                 description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1])


#: the ``experiment`` entry of ``iclkd``'s command registry
EXPERIMENT_GROUP = _group()


def main(argv: list[str] | None = None) -> int:
    """``iclkd experiment ...`` on its own (``python -m experiments.cli NAME ...``)."""
    from verification.io.command import run_registry

    argv = list(sys.argv[1:] if argv is None else argv)
    # float64 for the checks (run_registry's default preparation); models and data are explicitly float32
    return run_registry("iclkd experiment", EXPERIMENT_GROUP.description, EXPERIMENT_GROUP.commands, argv)


if __name__ == "__main__":
    sys.exit(main())
