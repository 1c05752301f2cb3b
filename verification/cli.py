"""The ``iclkd`` command: ``verify`` (the suite), ``bench`` (benchmarks), ``experiment`` (trained models).

Exit statuses, shared by every subcommand: 0 success; 1 a theorem or lemma violated (or a
self-test mutant escaped); 2 usage, input or output error (reported before anything runs);
3 a check or computation raised (status ``error``); 4 ``launch``: a process died; 75 preempted (SIGTERM
stopped a journaled run; ``--resume`` finishes it); 130 interrupted. Output paths are checked and
their folders created before anything is computed; reports are written atomically.

Extending the command line (see :mod:`verification.command` for the machinery):

* a new top-level subcommand (``iclkd search``, ``iclkd launch``): one line in :data:`COMMANDS`,
  ``"search": Command("one-line summary", "verification.adversary")``, where the module (or
  ``"module:object"``) provides ``add_arguments(parser)`` and ``run(args) -> int``;
* a new benchmark (``iclkd bench mutation``): one line in ``benchmarks.BENCHMARKS``, same protocol;
* a new experiment (``iclkd experiment llm-...``): one line in ``experiments.cli.EXPERIMENTS``
  (its module provides ``run(opts) -> Result`` and, optionally, ``add_arguments(parser)``);
* a new flag of ``iclkd verify`` (``--certify``, ``--real-model smollm2``, ``--plugin``): a
  :class:`VerifyOption` appended to :data:`VERIFY_OPTIONS`: ``add_arguments(parser)``;
  ``prepare(args)`` runs after parsing and before any check (load plugins, fail fast on a missing
  model by raising :class:`~verification.command.CommandError`); ``extend(args, results)`` runs after
  the registry checks and returns the results to report (append real-model results, attach
  certificates). Choices come from the registries (``PROFILES``, ``real_model.MODELS``, the checks).

Use argument types from :mod:`verification.command` for every path and number: ``output_file`` and
``output_dir`` check writability while parsing; ``seed``, ``positive_int``, ``non_negative_int`` and
``positive_float`` reject bad numbers with a one-line message (exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path

from verification.command import (
    Command,
    CommandError,
    ExitStatus,
    Group,
    LazyChoices,
    Parser,
    output_file,
    prepare_entry_point,
    run_registry,
    seed,
    unique_ids,
)

#: the profile of ``iclkd verify`` when none is given, and that of ``iclkd verify --self-test``
DEFAULT_PROFILE = "default"
SELF_TEST_PROFILE = "quick"


def enable_compilation_cache() -> None:
    """JAX's persistent compilation cache, so warm runs skip XLA compilation (override with ICLKD_CACHE_DIR)."""
    import jax

    cache_dir = os.environ.get("ICLKD_CACHE_DIR", str(Path.home() / ".cache" / "iclkd-jax" / "xla"))
    if cache_dir.lower() in ("", "0", "off", "none"):
        return
    try:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        # every program, however quick to compile: verify and the tests compile a few hundred small
        # programs, and caching those under 0.1 s too took the warm default profile 68.5 s -> 59.7 s
        # (the compile-bound checks 25-45 % faster), for ~3 MB of cache (issue 12.5)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    except Exception:  # an unwritable cache must never stop verification
        pass


# --------------------------------------------------------------------------------------- verify options


@dataclasses.dataclass(frozen=True)
class VerifyOption:
    """Flags of ``iclkd verify`` contributed by one feature (module docstring)."""

    add_arguments: Callable[[Parser], None]
    prepare: Callable[[argparse.Namespace], None] | None = None
    extend: Callable[[argparse.Namespace, list], list] | None = None


def _real_model_models():
    from verification.real_model import MODELS

    return MODELS


def _real_model_arguments(parser: Parser) -> None:
    parser.add_argument("--real-model", choices=LazyChoices(_real_model_models), metavar="MODEL",
                        help="add checks on a real pretrained attention layer: %(choices)s")


def _real_model_prepare(args: argparse.Namespace) -> None:
    if not args.real_model:
        return
    from verification import real_model

    if args.self_test:
        raise CommandError("--real-model is not part of --self-test (its mutants are tested by pytest)")
    try:  # fail fast, before the registry checks run, when the model or its extra is missing
        real_model.check_available(args.real_model)
    except real_model.minilm.ModelUnavailable as err:
        raise CommandError(f"--real-model {args.real_model}: {err}") from None


def _real_model_extend(args: argparse.Namespace, results: list) -> list:
    if not args.real_model:
        return results
    from verification import real_model

    try:
        return results + real_model.run(args.real_model, seed=args.seed, profile=args.profile or DEFAULT_PROFILE)
    except real_model.minilm.ModelUnavailable as err:
        raise CommandError(f"--real-model {args.real_model}: {err}") from None


def _certify_arguments(parser: Parser) -> None:
    parser.add_argument("--certify", action="store_true",
                        help="after the checks, re-evaluate each deterministic check's worst case and each conjecture's "
                             "counterexample in ball arithmetic (python-flint) and add a certificate to the report")


def _certify_prepare(args: argparse.Namespace) -> None:
    if not args.certify:
        return
    if args.self_test:
        raise CommandError("--certify is not part of --self-test (certificates are tested by pytest)")
    try:  # fail fast, before any check runs
        import flint  # noqa: F401
    except ImportError:
        raise CommandError("--certify needs python-flint: pip install 'iclkd-jax[certify]'") from None


def _certify_extend(args: argparse.Namespace, results: list) -> list:
    if args.certify:
        from verification.certificates import certify_results

        seconds = certify_results(results)
        print(f"certificates: {seconds:.2f} s", file=sys.stderr)
    return results


def _plugin_arguments(parser: Parser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                        help="load checks from your own module or .py file (repeatable; see verification.api); "
                             "installed plugins (entry points 'iclkd.checks') load by themselves")


def _plugin_prepare(args: argparse.Namespace) -> None:
    from verification.plugins import load_plugin
    from verification.registry import all_checks

    all_checks()  # the built-in checks first: a plugin cannot take their ids
    for spec in dict.fromkeys(args.plugin):
        ids = load_plugin(spec)
        print(f"plugin {spec}: {', '.join(ids)}", file=sys.stderr)


#: flags of ``iclkd verify`` added by features; append a :class:`VerifyOption` to add one
VERIFY_OPTIONS: list[VerifyOption] = [
    VerifyOption(_plugin_arguments, _plugin_prepare),  # first: the other options see the plugins' checks
    VerifyOption(_real_model_arguments, _real_model_prepare, _real_model_extend),
    VerifyOption(_certify_arguments, _certify_prepare, _certify_extend),  # last: certifies every result
]


# ------------------------------------------------------------------------------------------------ verify


class Verify:
    """Check every statement of THEOREMS.md (theorems and lemmas hold or are violated; conjectures
    survive or are refuted), or run the checks against their mutants (``--self-test``).

    Exit status: 0 every theorem and lemma holds (self-test: every mutant caught); 1 one is violated
    (a mutant escaped); 2 a usage or output error, before anything runs; 3 a check raised (status
    ``error``); 75 SIGTERM stopped the run after journaling the check in flight (``--resume`` finishes
    it; :mod:`verification.engine.journal`); 130 interrupted (the checks finished so far are printed, no
    report is written).
    """

    @staticmethod
    def add_arguments(parser: Parser) -> None:
        from verification.registry import PROFILES

        parser.add_argument("--profile", choices=tuple(PROFILES), default=None,
                            help=f"how hard to look: smoke (fewest cases), quick (< 60 s), default (a few minutes), "
                                 f"thorough (a long search). Default: {DEFAULT_PROFILE}; with --self-test: "
                                 f"{SELF_TEST_PROFILE}")
        parser.add_argument("--only", nargs="+", metavar="ID",
                            help="run only these check ids (see --list); repeats run once")
        parser.add_argument("--seed", type=seed, default=0, help="the PRNG seed; the same seed gives the same report")
        parser.add_argument("--json", type=output_file, metavar="PATH", help="write the JSON report here")
        parser.add_argument("--markdown", type=output_file, metavar="PATH", help="write a Markdown report here")
        parser.add_argument("--html", type=output_file, metavar="PATH",
                            help="write a self-contained HTML report here (plots with the 'plots' extra; it links to "
                                 "the tightness and search pages beside it)")
        parser.add_argument("--junit-xml", type=output_file, metavar="PATH",
                            help="write JUnit XML here: one testcase per check (per mutant with --self-test)")
        parser.add_argument("--self-test", action="store_true",
                            help=f"run every check against its mutants (profile {SELF_TEST_PROFILE} unless --profile)")
        parser.add_argument("--list", action="store_true", help="list the checks and their mutants, then exit")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (off anyway when not a TTY)")
        from verification.engine import journal

        journal.add_arguments(parser, default="REPORT.journal beside --json (or --markdown, --html, --junit-xml); "
                                              "none without a report")
        for option in VERIFY_OPTIONS:
            option.add_arguments(parser)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from verification.registry import all_checks

        for option in VERIFY_OPTIONS:
            if option.prepare is not None:
                option.prepare(args)
        checks = all_checks()
        if args.list:
            for cid, cls in checks.items():
                print(f"{cid:16s} {cls.kind:10s} {cls.title}")
                for name, description in cls.mutants.items():
                    print(f"{'':16s}   mutant {name}: {description}")
            return ExitStatus.OK
        ids = unique_ids(args.only, list(checks), "check id")
        progress = not args.no_progress and sys.stderr.isatty()
        if args.self_test:
            return _self_test(args, ids, progress)
        return _verify(args, ids, progress)


def _journal(args: argparse.Namespace, command: str, profile: str, ids: list[str] | None):
    """The run's journal (verification.engine.journal): its fingerprint's arguments are what a check's result
    depends on; the selection (``--only``, plugins, real model, certificates) is what ``--resume`` must match too."""
    from verification.engine import journal

    return journal.from_args(
        args, command, {"profile": profile, "seed": args.seed},
        selection={"only": ids, "plugin": list(dict.fromkeys(args.plugin)), "real_model": args.real_model,
                   "certify": args.certify},
        default=journal.beside(args.json or args.markdown or args.html or args.junit_xml), prog=f"iclkd {command}")


def _verify(args: argparse.Namespace, ids: list[str] | None, progress: bool) -> int:
    from verification import report, runner
    from verification.engine import journal
    from verification.outputs import write_atomic, write_json

    profile = args.profile or DEFAULT_PROFILE
    results = []
    run_journal = _journal(args, "verify", profile, ids)
    _preload_pages(args)
    try:
        with journal.active(run_journal):
            for result in runner.iter_checks(ids, profile=profile, seed=args.seed, progress=progress,
                                             journal=run_journal):
                results.append(result)
            for option in VERIFY_OPTIONS:
                if option.extend is not None:
                    results = option.extend(args, results)
    except KeyboardInterrupt:
        if results:
            print(report.table(results))
        print(f"iclkd verify: interrupted after {len(results)} finished check(s); no report written",
              file=sys.stderr)
        return ExitStatus.INTERRUPTED
    print(report.table(results))
    print(report.budget_line(profile))
    data = report.to_json(results, profile=profile, seed=args.seed)
    if args.json:
        write_json(args.json, data)
    if args.markdown:
        write_atomic(args.markdown, report.markdown(results, profile=profile, seed=args.seed))
    _write_pages(args, data)
    return verdict_status(results)


def _preload_pages(args: argparse.Namespace) -> None:
    """With ``--html``: matplotlib imported and warmed in a background thread while the checks run."""
    if args.html:
        import threading

        from verification.io import html

        args.html_preload = threading.Thread(target=html.preload, name="iclkd-html-preload", daemon=True)
        args.html_preload.start()


def _write_pages(args: argparse.Namespace, data: dict, *, self_test: bool = False) -> None:
    """``--html`` and ``--junit-xml``, from the report's data (verification.io.html, verification.io.junit)."""
    import time

    from verification.outputs import write_atomic

    start = time.perf_counter()
    if getattr(args, "html_preload", None) is not None:
        args.html_preload.join()
    if args.html:
        from verification.io import html
        from verification.registry import all_checks

        titles = {cid: cls.title for cid, cls in all_checks().items()}
        links = html.sibling_pages(Path(args.html).parent, exclude=Path(args.html))
        write = html.self_test_page if self_test else html.verify_page
        write_atomic(args.html, write(data, titles=titles, links=links))
    if args.junit_xml:
        from verification.io import junit

        write_atomic(args.junit_xml, (junit.self_test_junit if self_test else junit.verify_junit)(data))
    if args.html or args.junit_xml:
        print(f"reports: {time.perf_counter() - start:.2f} s", file=sys.stderr)


def verdict_status(results: list) -> int:
    """1 if a theorem or lemma is violated, else 3 if a check raised, else 0 (both are printed)."""
    violated = [r.id for r in results if r.kind in ("theorem", "lemma") and r.status == "violated"]
    errors = [r.id for r in results if r.status == "error"]
    if violated:
        print(f"violated: {', '.join(violated)}", file=sys.stderr)
    if errors:
        print(f"error (the check raised): {', '.join(errors)}", file=sys.stderr)
    return ExitStatus.VIOLATED if violated else ExitStatus.ERROR if errors else ExitStatus.OK


def _self_test(args: argparse.Namespace, ids: list[str] | None, progress: bool) -> int:
    from verification import runner
    from verification.engine import journal
    from verification.outputs import write_json

    if args.markdown:
        raise CommandError("--self-test writes no Markdown report (use --json)")
    profile = args.profile or SELF_TEST_PROFILE
    if args.profile is None:
        print(f"self-test: profile {profile} (the self-test's default; --profile changes it)", file=sys.stderr)
    outcomes = []
    run_journal = _journal(args, "verify --self-test", profile, ids)
    try:
        with journal.active(run_journal):
            for o in runner.iter_self_test(ids, profile=profile, seed=args.seed, progress=progress,
                                           journal=run_journal):
                outcomes.append(o)
                mark = "caught" if o.caught else "MISSED"
                print(f"{mark:7s} {o.check_id:16s} {o.mutant:28s} {o.baseline_status} -> {o.mutant_status}  "
                      f"({o.description})", flush=True)
    except KeyboardInterrupt:
        print(f"iclkd verify --self-test: interrupted after {len(outcomes)} mutant(s); no report written",
              file=sys.stderr)
        return ExitStatus.INTERRUPTED
    caught = sum(o.caught for o in outcomes)
    print(f"{caught}/{len(outcomes)} mutants caught")
    data = {"profile": profile, "seed": args.seed, "mutants": [o.__dict__ for o in outcomes], "caught": caught,
            "total": len(outcomes)}
    if args.json:
        write_json(args.json, data)
    _write_pages(args, data, self_test=True)
    return ExitStatus.OK if outcomes and caught == len(outcomes) else ExitStatus.VIOLATED


# ------------------------------------------------------------------------------------------------ registry


def _commands() -> dict[str, Command | Group]:
    from benchmarks import BENCHMARKS
    from experiments.cli import EXPERIMENT_GROUP

    return {
        "verify": Command("check every statement of THEOREMS.md (or --self-test the checks)", "verification.cli:Verify"),
        "bench": Group("benchmarks: " + ", ".join(BENCHMARKS), BENCHMARKS, metavar="BENCHMARK",
                       description="Benchmarks of the library and the bounds; each has its own --help."),
        "experiment": EXPERIMENT_GROUP,
        "launch": Command("run an iclkd command as N local processes with jax.distributed (docs/distributed.md)",
                          "verification.distributed:Launch"),
        "search": Command("gradient worst-case search of a statement's ratio, beside random search at the same budget",
                          "verification.adversary"),
    }


#: the top-level subcommands; add one line to add a subcommand (module docstring)
COMMANDS: dict[str, Command | Group] = _commands()


def _prepare(args: argparse.Namespace) -> None:
    prepare_entry_point(args)  # float64 on
    enable_compilation_cache()


def main(argv: list[str] | None = None) -> int:
    """The ``iclkd`` entry point; returns the exit status (module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    description = __doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1]
    if argv[:1] != ["launch"]:  # one of several processes? initialise before any JAX backend use
        from verification import distributed

        try:
            distributed.initialize()
        except distributed.DistributedConfigError as err:
            print(f"iclkd: {err}", file=sys.stderr)
            return ExitStatus.USAGE
    return run_registry("iclkd", description, COMMANDS, argv, prepare=_prepare)


if __name__ == "__main__":
    sys.exit(main())
