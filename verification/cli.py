"""The ``iclkd`` command: ``verify`` (the suite), ``bench`` (benchmarks), ``experiment`` (trained models).

Exit statuses, shared by every subcommand: 0 success; 1 a theorem or lemma violated (or a
self-test mutant escaped); 2 usage, input or output error (reported before anything runs);
3 a check or computation raised (status ``error``); 4 ``launch``: a process died; 75 preempted (SIGTERM
stopped a journaled run; ``--resume`` finishes it); 130 interrupted. Output paths are checked and
their folders created before anything is computed; reports are written atomically.

Extending the command line (see :mod:`verification.io.command` for the machinery):

* a new top-level subcommand (``iclkd search``, ``iclkd launch``): a class with ``add_arguments(parser)``
  and ``run(args) -> int`` (:class:`Search`, :class:`Launch` below) and one line in :data:`COMMANDS`,
  ``"search": Command("one-line summary", Search)``;
* a new benchmark (``iclkd bench mutation``): one line in ``benchmarks.BENCHMARKS``, same protocol, with
  the function that imports its module;
* a new experiment (``iclkd experiment llm-...``): one line in ``experiments.cli.EXPERIMENTS``
  (its module provides ``run(opts) -> Result`` and, optionally, ``add_arguments(parser)``);
* a command of another distribution: an entry point of the group ``iclkd.commands``
  (``"bench.my-bench" = "my_package.commands:MY_BENCH"``, a :class:`~verification.io.command.Command`);
* a new flag of ``iclkd verify`` (``--certify``, ``--real-model smollm2``, ``--plugin``): a
  :class:`VerifyOption` appended to :data:`VERIFY_OPTIONS`: ``add_arguments(parser)``;
  ``prepare(args)`` runs after parsing and before any check (load plugins, fail fast on a missing
  model by raising :class:`~verification.core.errors.CommandError`); ``extend(args, results)`` runs after
  the checks and returns the results to report (attach certificates). Choices come from the registries
  (``PROFILES``, ``real_models.checks.MODELS``, the checks).

Use argument types from :mod:`verification.io.command` for every path and number: ``output_file`` and
``output_dir`` check writability while parsing; ``seed``, ``positive_int``, ``non_negative_int`` and
``positive_float`` reject bad numbers with a one-line message (exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax

from benchmarks import BENCHMARKS
from experiments.cli import EXPERIMENT_GROUP
from verification.core import process, protocol
from verification.core.errors import DistributedConfigError, ModelUnavailable, PluginError
from verification.core.model import PROFILES
from verification.core.outputs import write_atomic, write_json
from verification.engine import certify, journal, runner
from verification.engine import distributed as engine_distributed
from verification.engine import search as search_driver
from verification.engine.plugins import all_checks, load_plugin
from verification.io import html, junit, report
from verification.io.command import (
    Command,
    CommandError,
    ExitStatus,
    Group,
    LazyChoices,
    Parser,
    input_file,
    output_file,
    positive_int,
    prepare_entry_point,
    run_registry,
    seed,
    unique_ids,
)
from verification.real_models import checks as real_model
from verification.search.ascent import SearchResult, SearchTarget

#: the profile of ``iclkd verify`` when none is given, and that of ``iclkd verify --self-test``
DEFAULT_PROFILE = "default"
SELF_TEST_PROFILE = "quick"


def enable_compilation_cache() -> None:
    """JAX's persistent compilation cache, so warm runs skip XLA compilation (override with ICLKD_CACHE_DIR)."""
    cache_dir = os.environ.get("ICLKD_CACHE_DIR", str(Path.home() / ".cache" / "iclkd-jax" / "xla"))
    if cache_dir.lower() in ("", "0", "off", "none"):
        return
    try:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        # every program, however quick to compile: verify and the tests compile a few hundred small programs,
        # most of them under 0.1 s, and the compile-bound checks spend most of a warm run compiling them
        # (docs/performance.md has the measurement)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    except Exception:  # noqa: BLE001  (an unwritable or unsupported cache of any kind must never stop verification)
        pass


# --------------------------------------------------------------------------------------- verify options


@dataclasses.dataclass(frozen=True)
class VerifyOption:
    """Flags of ``iclkd verify`` contributed by one feature (module docstring)."""

    add_arguments: Callable[[Parser], None]
    prepare: Callable[[argparse.Namespace], None] | None = None
    extend: Callable[[argparse.Namespace, list], list] | None = None


def _real_model_models():
    return real_model.MODELS


def _real_model_arguments(parser: Parser) -> None:
    parser.add_argument("--real-model", choices=LazyChoices(_real_model_models), metavar="MODEL",
                        help="add the checks on a real pretrained model (ID@MODEL in --list): %(choices)s")


def _real_model_prepare(args: argparse.Namespace) -> None:
    if not args.real_model:
        return
    try:  # fail fast, before any check runs, when the model or its extra is missing
        real_model.check_available(args.real_model)
    except ModelUnavailable as err:
        raise CommandError(f"--real-model {args.real_model}: {err}") from None


def selected_ids(args: argparse.Namespace, checks: dict) -> list[str] | None:
    """The ids a run of ``iclkd verify`` selects: ``--only`` (or every check not on a real model), plus the checks
    on the ``--real-model`` model. A named real-model check whose model is missing is a usage error."""
    ids = unique_ids(args.only, list(checks), "check id")
    if args.real_model:
        ids = list(dict.fromkeys((ids or runner.default_ids(checks))
                                 + [cid for cid, cls in checks.items() if getattr(cls, "real_model", None) == args.real_model]))
    for cid in ids or ():
        reason = protocol.unavailable(checks[cid])
        if reason:
            raise CommandError(f"{cid} cannot run here: {reason}")
    return ids


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
        import flint  # noqa: F401  (here: python-flint is optional, the certify extra)
    except ImportError:
        raise CommandError("--certify needs python-flint: pip install 'iclkd-jax[certify]'") from None


def _certify_extend(args: argparse.Namespace, results: list) -> list:
    if args.certify:
        seconds = certify.certify_results(results)
        print(f"certificates: {seconds:.2f} s", file=sys.stderr)
    return results


def _plugin_arguments(parser: Parser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                        help="load checks from your own module or .py file (repeatable; see verification.api); "
                             "installed plugins (entry points 'iclkd.checks') load by themselves")


def _plugin_prepare(args: argparse.Namespace) -> None:
    all_checks()  # the built-in checks first: a plugin cannot take their ids
    for spec in dict.fromkeys(args.plugin):
        ids = load_plugin(spec)
        print(f"plugin {spec}: {', '.join(ids)}", file=sys.stderr)


#: flags of ``iclkd verify`` added by features; append a :class:`VerifyOption` to add one
VERIFY_OPTIONS: list[VerifyOption] = [
    VerifyOption(_plugin_arguments, _plugin_prepare),  # first: the other options see the plugins' checks
    VerifyOption(_real_model_arguments, _real_model_prepare),
    VerifyOption(_certify_arguments, _certify_prepare, _certify_extend),  # last: certifies every result
]


# ------------------------------------------------------------------------------------------------ verify


class Verify:
    """Check every statement of docs/statements.md (theorems and lemmas hold or are violated; conjectures
    survive or are refuted), or run the checks against their mutants (``--self-test``).

    Exit status: 0 every theorem and lemma holds (self-test: every mutant caught); 1 one is violated
    (a mutant escaped); 2 a usage or output error, before anything runs; 3 a check raised (status
    ``error``); 75 SIGTERM stopped the run after journaling the check in flight (``--resume`` finishes
    it; :mod:`verification.engine.journal`); 130 interrupted (the checks finished so far are printed, no
    report is written).
    """

    @staticmethod
    def add_arguments(parser: Parser) -> None:
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
        journal.add_arguments(parser, default="REPORT.journal beside --json (or --markdown, --html, --junit-xml); "
                                              "none without a report")
        for option in VERIFY_OPTIONS:
            option.add_arguments(parser)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        for option in VERIFY_OPTIONS:
            if option.prepare is not None:
                option.prepare(args)
        checks = all_checks()
        if args.list:
            for cid, cls in checks.items():
                reason = protocol.unavailable(cls)
                print(f"{cid:16s} {cls.kind:10s} {cls.title}" + (f" [unavailable: {reason}]" if reason else ""))
                for name, description in cls.mutants.items():
                    print(f"{'':16s}   mutant {name}: {description}")
            return ExitStatus.OK
        ids = selected_ids(args, checks)
        progress = not args.no_progress and sys.stderr.isatty()
        if args.self_test:
            return _self_test(args, ids, progress)
        return _verify(args, ids, progress)


def _journal(args: argparse.Namespace, command: str, profile: str, ids: list[str] | None):
    """The run's journal (verification.engine.journal): its fingerprint's arguments are what a check's result
    depends on; the selection (``--only``, plugins, real model, certificates) is what ``--resume`` must match too."""
    return journal.from_args(
        args, command, {"profile": profile, "seed": args.seed},
        selection={"only": ids, "plugin": list(dict.fromkeys(args.plugin)), "real_model": args.real_model,
                   "certify": args.certify},
        default=journal.beside(args.json or args.markdown or args.html or args.junit_xml), prog=f"iclkd {command}")


def _verify(args: argparse.Namespace, ids: list[str] | None, progress: bool) -> int:
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
        args.html_preload = threading.Thread(target=html.preload, name="iclkd-html-preload", daemon=True)
        args.html_preload.start()


def _write_pages(args: argparse.Namespace, data: dict, *, self_test: bool = False) -> None:
    """``--html`` and ``--junit-xml``, from the report's data (verification.io.html, verification.io.junit)."""
    start = time.perf_counter()
    if getattr(args, "html_preload", None) is not None:
        args.html_preload.join()
    if args.html:
        titles = {cid: cls.title for cid, cls in all_checks().items()}
        links = html.sibling_pages(Path(args.html).parent, exclude=Path(args.html))
        write = html.self_test_page if self_test else html.verify_page
        write_atomic(args.html, write(data, titles=titles, links=links))
    if args.junit_xml:
        write_atomic(args.junit_xml, (junit.self_test_junit if self_test else junit.verify_junit)(data))
    if args.html or args.junit_xml:
        print(f"reports: {time.perf_counter() - start:.2f} s", file=sys.stderr)


def verdict_status(results: list) -> int:
    """1 if a theorem or lemma is violated, else 3 if a check raised or a certificate could not be built,
    else 0 (both are printed)."""
    violated = [r.id for r in results if r.kind in ("theorem", "lemma") and r.status == "violated"]
    errors = [r.id for r in results if r.status == "error"]
    # a certificate that could not be built (a claim naming a key the worst case lacks) fails loudly too
    uncertified = [r.id for r in results if (r.certificate or {}).get("status") == "error"]
    if violated:
        print(f"violated: {', '.join(violated)}", file=sys.stderr)
    if errors:
        print(f"error (the check raised): {', '.join(errors)}", file=sys.stderr)
    if uncertified:
        print(f"error (the certificate could not be built): {', '.join(uncertified)}", file=sys.stderr)
    return ExitStatus.VIOLATED if violated else ExitStatus.ERROR if errors or uncertified else ExitStatus.OK


def _self_test(args: argparse.Namespace, ids: list[str] | None, progress: bool) -> int:
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


# ------------------------------------------------------------------------------------------------ other commands


class Search:
    """Gradient worst-case search of a statement's ratio, beside random search at the same budget
    (docs/search.md). ``iclkd search ID [--budget N] [--seed S] [--restarts R] [--json PATH] [--plot PATH]
    [--list]``; a plugin whose check offers the ``search_targets`` hook is searchable (``--plugin``)."""

    @staticmethod
    def add_arguments(parser: Parser) -> None:
        parser.add_argument("id", nargs="?", help="a check id (all its targets), a target name such as thm-4.2/risk, "
                                                  "or 'all'")
        parser.add_argument("--budget", type=positive_int, default=2048,
                            help="objective evaluations per target, gradient steps x restarts (default 2048); the "
                                 "random search gets the same number")
        parser.add_argument("--seed", type=seed, default=0)
        parser.add_argument("--restarts", type=positive_int, default=None,
                            help="parallel restarts (default: the target's)")
        parser.add_argument("--json", type=output_file, metavar="PATH", help="write the results as JSON here")
        parser.add_argument("--plot", type=output_file, metavar="PATH",
                            help="plot best-so-far ratios against evaluations, gradient vs random (PNG)")
        parser.add_argument("--html", type=output_file, metavar="PATH",
                            help="write a self-contained HTML page of the results (a card and a plot per target); an "
                                 "iclkd verify --html page in the same folder links to it")
        parser.add_argument("--plugin", action="append", metavar="MODULE_OR_FILE", default=[],
                            help="load checks from a plugin first (repeatable); a check that defines search_targets() "
                                 "becomes searchable")
        parser.add_argument("--list", action="store_true",
                            help="list the searchable checks and their targets, then exit")
        journal.add_arguments(parser, default="JSON.journal beside --json; none without it")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        for spec in args.plugin or []:
            try:
                load_plugin(spec)
            except PluginError as err:
                raise CommandError(f"error: {err}") from None
        if args.list:
            for cid in search_driver.searchable_ids():
                for t in search_driver.targets_for(cid):
                    print(f"{t.name:26s} {t.description}")
            return ExitStatus.OK
        if args.id is None:
            raise CommandError("error: an ID is required (a check id, a target name, or 'all'; --list shows them)")
        if args.budget < 8:
            raise CommandError(f"error: --budget must be >= 8 evaluations, got {args.budget}")
        try:
            targets = search_driver.resolve(args.id)
        except ValueError as err:
            raise CommandError(f"error: {err}") from None
        printed = 0

        def progress(results: list[SearchResult]) -> None:
            nonlocal printed
            for r in results[printed:]:
                print(f"{r.target:26s} {r.best_ratio:12.6g} {r.random_best_ratio:12.6g} {r.evaluations:8d} "
                      f"{r.agreement:9.1e} {r.elapsed_s:7.1f}s  {r.ratio_label}", flush=True)
            printed = len(results)
            if args.json:  # rewritten (atomically) after every target: a stopped long run keeps its results
                write_json(args.json, document(results))

        def document(results: list[SearchResult]) -> dict:
            return {"id": args.id, "budget": args.budget, "seed": args.seed, "complete": len(results) == len(targets),
                    "targets": {r.target: r.to_json() for r in results}}

        run_journal = journal.from_args(args, "search", {"budget": args.budget, "seed": args.seed,
                                                         "restarts": args.restarts},
                                        selection={"id": args.id, "plugin": list(dict.fromkeys(args.plugin or []))},
                                        default=journal.beside(args.json), prog="iclkd search")
        checks = all_checks()

        def unit(target: SearchTarget) -> journal.Unit:  # a target's own code: its check's module
            check = checks.get(target.name.partition("/")[0])
            return journal.Unit(f"target/{target.name}", target.name, journal.check_sources(check) if check else ())

        def search(target: SearchTarget) -> SearchResult:
            return search_driver.run_search(target, budget=args.budget, seed=args.seed, restarts=args.restarts)

        print(f"{'target':26s} {'best ratio':>12s} {'random':>12s} {'evals':>8s} {'agreement':>9s} {'time':>8s}  ratio")
        results = []
        # target j on process j mod N (docs/distributed.md); each has its own key; journaled targets are reused
        with journal.active(run_journal):
            for result in journal.map_units(targets, search, journal=run_journal, unit_of=unit,
                                            decode=journal.decode_as(SearchResult)):
                results.append(result)
                progress(results)
        if args.plot:
            search_driver.plot(results, args.plot)
        if args.html:
            write_atomic(args.html, html.search_page(document(results)))
        return ExitStatus.OK


class Certify:
    """Certify the worst cases of an existing ``iclkd verify --json`` report without re-running the checks
    (``iclkd verify --certify`` does both in one run): each check's ``worst_case`` re-evaluated in ball
    arithmetic (python-flint)."""

    @staticmethod
    def add_arguments(parser: Parser) -> None:
        parser.add_argument("report", type=input_file, help="a JSON report written by iclkd verify --json")
        parser.add_argument("--output", type=output_file, help="write the report with its certificates here")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        _certify_prepare(argparse.Namespace(certify=True, self_test=False))
        try:
            data = json.loads(args.report.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CommandError(f"cannot read {args.report}: {err}") from None
        certify.certify_report(data)
        for check in data.get("checks", []):
            cert = check["certificate"]
            bits = f" ({cert['precision_bits']} bits)" if cert.get("precision_bits") else ""
            print(f"{check['id']:16s} {cert['status'] + bits:28s} {cert.get('reason', '')}")
        print(f"certificates: {data['certify_elapsed_s']:.2f} s")
        if args.output:
            write_json(args.output, data)
        return ExitStatus.OK


class Launch:
    """Run an iclkd command as N local processes on loopback (jax.distributed; docs/distributed.md).

    ``iclkd launch -n 2 -- verify --profile quick --json r.json`` gives the same report as the
    one-process run (timing fields aside). Process 0's output is shown and it alone writes files.
    Exit status: process 0's (0, 1, 2, 3, 75 or 130, as for the command itself), or 4 when a process
    died or a peer never started (one line says which and why; the others are stopped).
    """

    @staticmethod
    def add_arguments(parser) -> None:
        parser.add_argument("-n", "--processes", type=positive_int, required=True, metavar="N",
                            help="number of local processes (each uses this machine's CPU devices)")
        parser.add_argument("--init-timeout", type=positive_int, default=process.DEFAULT_INIT_TIMEOUT_S, metavar="S",
                            help="seconds a process waits for its peers to connect (default %(default)s)")
        parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                            help="the iclkd command and its arguments, after --")

    @staticmethod
    def run(args) -> int:
        command = list(args.command)
        if command[:1] == ["--"]:
            command = command[1:]
        if not command:
            raise CommandError("give the command to run after --, e.g. iclkd launch -n 2 -- verify --profile quick")
        if command[0] == "launch":
            raise CommandError("launch cannot launch itself")
        return engine_distributed.launch(args.processes, command, init_timeout_s=args.init_timeout)


# ------------------------------------------------------------------------------------------------ registry


def _commands() -> dict[str, Command | Group]:
    return {
        "verify": Command("check every statement of docs/statements.md (or --self-test the checks)", Verify),
        "bench": Group("benchmarks: " + ", ".join(BENCHMARKS), BENCHMARKS, metavar="BENCHMARK",
                       description="Benchmarks of the library and the bounds; each has its own --help."),
        "experiment": EXPERIMENT_GROUP,
        "launch": Command("run an iclkd command as N local processes with jax.distributed (docs/distributed.md)",
                          Launch),
        "search": Command("gradient worst-case search of a statement's ratio, beside random search at the same budget",
                          Search),
        "certify": Command("certify the worst cases of an existing verify --json report in ball arithmetic", Certify),
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
        try:
            process.initialize()
        except DistributedConfigError as err:
            print(f"iclkd: {err}", file=sys.stderr)
            return ExitStatus.USAGE
    return run_registry("iclkd", description, COMMANDS, argv, prepare=_prepare, installed=True)


if __name__ == "__main__":
    sys.exit(main())

