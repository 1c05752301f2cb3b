"""``iclkd experiment NAME [--quick] [--json PATH] [--out DIR] [--seed S] [--task T] [--no-plots]``.

Each experiment writes ``<out>/<name>.json``, ``<out>/<name>.md`` and PNG plots; trained
models are cached under ``<out>/cache`` (``.npz`` params + ``.json`` config and seed).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

EXPERIMENTS = {
    "mmd-shift": "experiments.mmd_shift",
    "selection": "experiments.selection",
    "lr-proxy": "experiments.lr_proxy",
    "weight-norm": "experiments.weight_norm",
    "multi-layer": "experiments.multi_layer",
    "thm31-trained": "experiments.thm31_trained",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="iclkd experiment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(EXPERIMENTS) + ["all"])
    p.add_argument("--quick", action="store_true", help="small models and samples (trains in < 2 min on 2 cores)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON result here")
    p.add_argument("--out", type=Path, default=Path("experiment-results"), metavar="DIR",
                   help="results, plots and the model cache (DIR/cache)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", choices=("regression", "classification"), default="regression")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots (matplotlib not needed)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)   # float64 for the checks; models and data are explicitly float32
    from experiments import common as C

    names = sorted(EXPERIMENTS) if args.name == "all" else [args.name]
    if len(names) > 1 and args.json:
        p.error("--json needs a single experiment")
    for name in names:
        opts = C.Options(quick=args.quick, seed=args.seed, out=args.out, json_path=args.json,
                         plots=not args.no_plots, task=args.task, verbose=not args.quiet)
        if opts.plots:
            try:
                C.pyplot()
            except RuntimeError as err:
                print(f"iclkd experiment: {err}", file=sys.stderr)
                return 2
        started = time.perf_counter()
        module = importlib.import_module(EXPERIMENTS[name])
        result = module.run(opts)
        data = C.write_outputs(result, opts, started)
        print(f"{name}: wrote {Path(args.out) / (name + '.json')} ({data['wall_seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
