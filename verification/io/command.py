"""The machinery of the ``iclkd`` command line: subcommand registries, argument types, dispatch.

The exit statuses (one table for every subcommand) and :class:`CommandError` live in
:mod:`verification.core.errors`; this module re-exports them for the benchmarks and experiments.

A subcommand is a :class:`Command`: a one-line summary and the object that provides
``add_arguments(parser)`` and ``run(args) -> int``, or a function that imports that object and returns
it. Every command is imported explicitly: ``iclkd``'s own in :mod:`verification.cli`, the benchmarks and
experiments inside such functions (``def load(): from benchmarks import perf; return perf``), so that
``iclkd verify`` does not pay for importing Flax or matplotlib, and only the command that runs is
imported. A :class:`Group` (``bench``, ``experiment``) is a registry of commands under one name.

Errors: a subcommand raises :class:`CommandError` (message, exit status); :func:`dispatch` prints
``iclkd SUB: message`` in one line and returns the status. Argument types (:func:`output_file`,
:func:`output_dir`, :func:`seed`, :func:`positive_int`, ...) reject bad values while the arguments
are parsed, with a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from verification import enable_x64
from verification.core.arguments import positive_float as positive_float  # an argument type of the commands too
from verification.core.errors import CommandError, ExitStatus, OutputError
from verification.core.outputs import check_output_dir, check_output_file
from verification.engine.plugins import all_checks


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``PROG: error: MESSAGE (see PROG --help)``), exit 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # argparse calls this for every usage error
        raise CommandError(f"error: {message} (see '{self.prog} --help')", prog=self.prog)


class Runnable(Protocol):
    def add_arguments(self, parser: Parser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: ``summary`` (one line, shown by ``--help``) and ``target``.

    ``target`` provides ``add_arguments(parser)`` and ``run(args) -> int``, or is a function without
    arguments that imports such an object and returns it (called only when the command runs or prints
    its own ``--help``). ``description`` (optional) is the longer text of the command's own ``--help``; by
    default the target's docstring.
    """

    summary: str
    target: Runnable | Callable[[], Runnable]
    description: str | None = None

    def load(self, name: str = "this command") -> Runnable:
        """The runnable object; a module it needs that is not installed is a :class:`CommandError` (usage)."""
        if is_runnable(self.target):
            return self.target
        try:
            return self.target()
        except ModuleNotFoundError as err:  # a module the command's module imports is not installed
            raise CommandError(f"not available in this installation: {name} needs {err.name!r}, which is not "
                               f"installed") from None
        except ImportError as err:  # ``from package import module``: the command's module itself is missing
            raise CommandError(f"not available in this installation: {name}: {err}") from None


def is_runnable(obj: Any) -> bool:
    """Whether ``obj`` provides ``add_arguments`` and ``run`` (else it is a function that imports such an object)."""
    return callable(getattr(obj, "add_arguments", None)) and callable(getattr(obj, "run", None))


@dataclasses.dataclass(frozen=True)
class Group:
    """A registry of commands under one name (``iclkd bench NAME``, ``iclkd experiment NAME``)."""

    summary: str
    commands: Mapping[str, Command]
    description: str | None = None
    metavar: str = "NAME"


Registry = Mapping[str, "Command | Group"]


def _add_entries(parser: Parser, registry: Registry, argv: Sequence[str], path: tuple[str, ...],
                 metavar: str = "COMMAND") -> None:
    sub = parser.add_subparsers(metavar=metavar, required=True, title=f"{metavar.lower()}s", parser_class=Parser)
    selected = argv[0] if argv else None
    for name, entry in registry.items():
        child = sub.add_parser(name, help=entry.summary, description=entry.description or entry.summary)
        child.set_defaults(_path=(*path, name), _parser=child)
        if name != selected:  # configure only the command that runs: importing every module would cost seconds
            continue
        if isinstance(entry, Group):
            _add_entries(child, entry.commands, argv[1:], (*path, name), entry.metavar)
            continue
        runnable = entry.load(child.prog)
        if entry.description is None and inspect.getdoc(runnable):
            child.description = inspect.getdoc(runnable)
        runnable.add_arguments(child)
        child.set_defaults(_run=runnable.run)


def prepare_entry_point(args: argparse.Namespace | None = None) -> None:
    """What every entry point does after parsing: float64 on (verification and the float64 rows of the
    benchmarks need it; float32 rows pass explicit float32 arrays)."""
    enable_x64()


def build_parser(prog: str, description: str, registry: Registry, argv: Sequence[str]) -> Parser:
    """The parser of ``registry``; only the command that ``argv`` selects is configured (and imported)."""
    parser = Parser(prog=prog, description=description)
    _add_entries(parser, registry, list(argv), ())
    return parser


#: the entry-point group through which an installed distribution adds ``iclkd`` commands
COMMAND_GROUP = "iclkd.commands"


@functools.cache
def installed_commands() -> dict[str, Command]:
    """The commands installed distributions declare in the entry-point group :data:`COMMAND_GROUP`, loaded
    once per process: ``{name: Command}``, where the name is the command's place (``"tool"`` adds ``iclkd
    tool``, ``"bench.tool"`` adds ``iclkd bench tool``) and the value names a :class:`Command`
    (``"my_package.commands:TOOL"``; its target may import the heavy parts only when it runs).

    Raises:
      CommandError: an entry point fails to load or names something that is not a :class:`Command`.
    """
    found = {}
    for ep in metadata.entry_points(group=COMMAND_GROUP):
        dist = getattr(getattr(ep, "dist", None), "name", "?")
        try:
            command = ep.load()
        except Exception as err:  # noqa: BLE001  (any failure of a third-party module: one line naming it)
            raise CommandError(f"the command {ep.name} = {ep.value} (entry points {COMMAND_GROUP}, distribution "
                               f"{dist}) failed to load: {type(err).__name__}: {err}") from None
        if not isinstance(command, Command):
            raise CommandError(f"the command {ep.name} = {ep.value} (entry points {COMMAND_GROUP}, distribution "
                               f"{dist}) is a {type(command).__name__}, not a verification.io.command.Command")
        found[ep.name] = command
    return found


def with_installed(registry: Registry) -> dict[str, Command | Group]:
    """``registry`` with :func:`installed_commands` added in their places; one may not replace a built-in command.

    Raises:
      CommandError: an installed command names a place that is taken or a group that does not exist.
    """
    out = dict(registry)
    for name, command in installed_commands().items():
        group_name, _, leaf = name.rpartition(".")
        if not group_name:
            if name in out:
                raise CommandError(f"the installed command {name!r} ({COMMAND_GROUP}) would replace iclkd {name}")
            out[name] = command
            continue
        group = out.get(group_name)
        if not isinstance(group, Group):
            raise CommandError(f"the installed command {name!r} ({COMMAND_GROUP}): iclkd has no group {group_name!r}")
        if leaf in group.commands:
            raise CommandError(f"the installed command {name!r} ({COMMAND_GROUP}) would replace iclkd {group_name} "
                               f"{leaf}")
        out[group_name] = dataclasses.replace(group, commands={**group.commands, leaf: command})
    return out


def run_registry(prog: str, description: str, registry: Registry, argv: Sequence[str], *,
                 prepare: Callable[[argparse.Namespace], None] | None = prepare_entry_point,
                 installed: bool = False) -> int:
    """An entry point over ``registry`` (``iclkd``, ``python -m experiments.cli``): build, parse, run; with
    ``installed``, the commands of the entry-point group :data:`COMMAND_GROUP` too (:func:`with_installed`)."""
    argv = list(argv)

    def parser() -> Parser:
        return build_parser(prog, description, with_installed(registry) if installed else registry, argv)

    return dispatch(parser, argv, prepare=prepare, prog=prog)


def dispatch(parser: Parser | Callable[[], Parser], argv: Sequence[str], *,
             prepare: Callable[[argparse.Namespace], None] | None = None, prog: str = "iclkd") -> int:
    """Parses ``argv``, runs the selected command and turns every failure into a one-line message and a status.

    ``parser`` may be a function that builds it (its failures, such as a missing module, are reported the
    same way). ``prepare(args)`` runs after parsing and before the command (the entry point switches on
    float64 there).
    """
    try:
        if not isinstance(parser, argparse.ArgumentParser):
            parser = parser()
        prog = parser.prog
        args, extra = parser.parse_known_args(list(argv))
        if extra:  # reported by the subcommand's parser, so the message names it and its --help
            getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
        prog = " ".join((parser.prog, *getattr(args, "_path", ())))
        if prepare is not None:
            prepare(args)
        return int(args._run(args) or 0)
    except CommandError as err:
        print(f"{err.prog or prog}: {err}", file=sys.stderr)
        return err.status
    except OutputError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return ExitStatus.USAGE
    except SystemExit as exit_:  # --help and --version exit 0 through argparse
        return exit_.code if isinstance(exit_.code, int) else ExitStatus.USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except Exception as err:  # a bug or a failed computation: one line, status 3 (the traceback on request)
        if env_flag("ICLKD_TRACEBACK"):
            raise
        print(f"{prog}: {type(err).__name__}: {err} (ICLKD_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return ExitStatus.ERROR


def standalone(prog: str, runnable: Any, argv: Sequence[str] | None = None) -> int:
    """``main(argv)`` of a module that provides ``add_arguments`` and ``run`` (``python -m benchmarks.perf``).

    Like ``iclkd``, an entry point: it switches float64 on (:func:`verification.enable_x64`).
    """
    parser = Parser(prog=prog, description=inspect.getdoc(runnable))
    runnable.add_arguments(parser)
    parser.set_defaults(_run=runnable.run, _parser=parser)
    return dispatch(parser, sys.argv[1:] if argv is None else argv, prepare=prepare_entry_point)


def listing(title: str, entries: Mapping[str, str]) -> str:
    """A ``--help`` epilog: ``title`` then one line per entry."""
    width = max((len(k) for k in entries), default=0)
    return "\n".join([f"{title}:", *(f"  {k.ljust(width)}  {v}" for k, v in entries.items())])


# ----------------------------------------------------------------------------------------- argument types
# argparse keeps the message of an ArgumentTypeError (and replaces that of any other exception).


def output_file(text: str) -> Path:
    """An output file: resolved, its parent folders created and checked for writing while parsing."""
    try:
        return check_output_file(text)
    except OutputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def output_dir(text: str) -> Path:
    """An output folder: resolved, created and checked for writing while parsing."""
    try:
        return check_output_dir(text)
    except OutputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def input_file(text: str) -> Path:
    """An input file: resolved; it must exist and be readable (checked while parsing)."""
    path = Path(os.path.abspath(os.path.expanduser(text)))
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{path}: no such file" if not path.exists() else f"{path} is not a file")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{path} is not readable")
    return path


def check_ids() -> list[str]:
    """The ids of the registered checks (built-in and installed plugins): ``choices=LazyChoices(check_ids)``."""
    return list(all_checks())


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def seed(text: str) -> int:
    """A PRNG seed: an integer in [0, 2**32)."""
    value = _integer(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"seed must be in [0, 2**32), got {value}")
    return value


def seeds(text: str) -> list[int]:
    """PRNG seeds: ``A..B`` (both ends included), ``a,b,c``, or a mix (``0..3,7``); sorted, repeats once."""
    values: list[int] = []
    for part in text.split(","):
        first, dots, last = part.strip().partition("..")
        if not dots:
            values.append(seed(first))
            continue
        low, high = seed(first), seed(last)
        if high < low:
            raise argparse.ArgumentTypeError(f"seed range {part.strip()!r} is empty: {high} < {low}")
        values.extend(range(low, high + 1))
    return sorted(set(values))


def positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def unique_ids(ids: Sequence[str] | None, known: Sequence[str], what: str = "id") -> list[str] | None:
    """``ids`` without repeats (first occurrence kept); unknown ids raise one :class:`CommandError` naming the
    unknown and the repeated ones together. Repeats alone only warn (they run once)."""
    if not ids:
        return None
    unknown = [i for i in dict.fromkeys(ids) if i not in known]
    repeated = [i for i in dict.fromkeys(ids) if ids.count(i) > 1]
    notes = []
    if unknown:
        notes.append(f"unknown {what}(s) {', '.join(unknown)}")
    if repeated:
        notes.append(f"repeated {what}(s) {', '.join(repeated)} (each runs once)")
    if unknown:
        raise CommandError(f"{'; '.join(notes)}; known: {', '.join(known)}")
    if repeated:
        print(f"note: {notes[0]}", file=sys.stderr)
    return list(dict.fromkeys(ids))


class LazyChoices(Sequence):
    """``choices=`` for argparse read from a registry on first use (membership, ``--help``, an error).

    Parsing a command line that does not use the option then imports nothing (``iclkd verify`` with
    a bad ``--json`` fails before JAX is imported). Give the argument a ``metavar``: without one argparse
    lists the choices in the usage line, which reads them at once.
    """

    def __init__(self, load: Callable[[], Sequence[str]]):
        self._load = load
        self._items: tuple[str, ...] | None = None

    def _get(self) -> tuple[str, ...]:
        if self._items is None:
            self._items = tuple(self._load())
        return self._items

    def __getitem__(self, index):
        return self._get()[index]

    def __len__(self) -> int:
        return len(self._get())

    def __contains__(self, value) -> bool:
        return value in self._get()

    def __iter__(self):
        return iter(self._get())


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() not in ("", "0", "no", "off", "false")
