"""The ``iclkd`` command: ``verify`` (the suite), ``bench`` (benchmarks), ``experiment`` (trained models)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path


def _enable_compilation_cache() -> None:
    """JAX's persistent compilation cache, so warm runs skip XLA compilation (override with ICLKD_CACHE_DIR)."""
    import jax

    cache_dir = os.environ.get("ICLKD_CACHE_DIR", str(Path.home() / ".cache" / "iclkd-jax" / "xla"))
    if cache_dir.lower() in ("", "0", "off", "none"):
        return
    try:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    except Exception:  # an unwritable cache must never stop verification
        pass


def _verify_parser(sub) -> None:
    p = sub.add_parser("verify", help="check every statement of THEOREMS.md")
    p.add_argument("--profile", choices=("smoke", "quick", "default", "thorough"), default="default",
                   help="smoke: fewest cases (self-test speed); quick: < 60 s; default: < 5 min; thorough: long search")
    p.add_argument("--only", nargs="+", metavar="ID", help="run only these check ids")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, metavar="PATH", help="write the JSON report here")
    p.add_argument("--markdown", type=Path, metavar="PATH", help="write a Markdown report here")
    p.add_argument("--self-test", action="store_true", help="run every check against its mutants")
    p.add_argument("--real-model", choices=("minilm",), help="add checks on a real pretrained attention layer")
    p.add_argument("--list", action="store_true", help="list the checks and their mutants, then exit")
    p.add_argument("--no-progress", action="store_true")


def _verify(args) -> int:
    import verification  # noqa: F401  (enables x64)
    from verification import report, runner
    from verification.registry import all_checks

    checks = all_checks()
    if args.list:
        for cid, cls in checks.items():
            print(f"{cid:16s} {cls.kind:10s} {cls.title}")
            for name, description in cls.mutants.items():
                print(f"{'':16s}   mutant {name}: {description}")
        return 0
    unknown = [i for i in (args.only or []) if i not in checks]
    if unknown:
        print(f"iclkd verify: unknown check id(s) {', '.join(unknown)}; known: {', '.join(checks)}", file=sys.stderr)
        return 2
    progress = not args.no_progress and sys.stderr.isatty()
    if args.self_test:
        outcomes = runner.self_test(args.only, profile=args.profile if args.profile != "default" else "quick",
                                    seed=args.seed, progress=progress)
        for o in outcomes:
            mark = "caught" if o.caught else "MISSED"
            print(f"{mark:7s} {o.check_id:16s} {o.mutant:28s} {o.baseline_status} -> {o.mutant_status}  ({o.description})")
        caught = sum(o.caught for o in outcomes)
        print(f"{caught}/{len(outcomes)} mutants caught")
        if args.json:
            args.json.write_text(json.dumps({"mutants": [o.__dict__ for o in outcomes], "caught": caught,
                                             "total": len(outcomes)}, indent=2, default=str))
        return 0 if outcomes and caught == len(outcomes) else 1
    if args.real_model:
        real = importlib.import_module("verification.real_model")
        try:  # fail fast, before the registry checks run, when the model or its extra is missing
            real.minilm.check_available()
        except real.minilm.ModelUnavailable as err:
            print(f"iclkd verify --real-model {args.real_model}: {err}", file=sys.stderr)
            return 2
    results = runner.run_checks(args.only, profile=args.profile, seed=args.seed, progress=progress)
    if args.real_model:
        try:
            results += real.run(args.real_model, seed=args.seed, profile=args.profile)
        except real.minilm.ModelUnavailable as err:
            print(f"iclkd verify --real-model {args.real_model}: {err}", file=sys.stderr)
            return 2
    print(report.table(results))
    if args.json:
        args.json.write_text(json.dumps(report.to_json(results, profile=args.profile, seed=args.seed), indent=2))
    if args.markdown:
        args.markdown.write_text(report.markdown(results, profile=args.profile, seed=args.seed))
    failed = [r.id for r in results if r.kind in ("theorem", "lemma") and r.status == "violated"]
    if failed:
        print(f"violated: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


# `iclkd bench NAME ...` and `iclkd experiment NAME ...` hand their remaining arguments to a module's main(argv).
BENCHES = {"tightness": "benchmarks.tightness", "perf": "benchmarks.perf"}


def _delegate(module_name: str, argv: list[str], what: str) -> int:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            print(f"iclkd: {what} is not available in this installation ({module_name} missing)", file=sys.stderr)
            return 2
        raise
    return int(module.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="iclkd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _verify_parser(sub)
    bench = sub.add_parser("bench", help="benchmarks: tightness | perf", add_help=False)
    bench.add_argument("name", choices=sorted(BENCHES))
    experiment = sub.add_parser("experiment", help="trained-transformer experiments", add_help=False)
    experiment.add_argument("name")
    args, rest = parser.parse_known_args(argv)
    _enable_compilation_cache()
    if args.command == "verify":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return _verify(args)
    if args.command == "bench":
        return _delegate(BENCHES[args.name], rest, f"bench {args.name}")
    return _delegate("experiments.cli", [args.name, *rest], "experiment")


if __name__ == "__main__":
    sys.exit(main())
