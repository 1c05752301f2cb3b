"""The run journal: long runs survive preemption (``--journal DIR``, ``--resume``, ``--grace S``).

A run is a list of independent *units* in a canonical order: the checks of ``iclkd verify``, the
mutants of ``verify --self-test``, the targets of ``iclkd search``, the cells of ``bench tightness``,
the experiments of ``iclkd experiment``. Each unit's result is a function of its *fingerprint* alone:

* the **arguments** it depends on (the command, the profile, the seed, the budget, ...; never the
  selection of the other units, ``--only``, which decides which units run, not what one computes);
* its **unit key** (``check/thm-4.1``, ``mutant/thm-4.1/drop-term``, ``target/thm-4.2/risk``, ...);
* the **code** it runs, as SHA-256 hashes of source files in named scopes (:data:`SCOPES`):

  ==============  ===========================================================================
  ``library``     every ``.py`` file of ``iclkd_jax/`` (whole-library hash: every check,
                  mutant, target, cell and experiment calls the library)
  ``reference``   the independent float64 reference (``verification/oracles/reference.py``)
  ``suite``       every other ``.py`` file of ``verification/`` except the statement folders
                  (runner, strategies, tolerances, batch numerics, search engine, ...)
  ``unit``        the unit's own code: a built-in statement's folder (``verification/statements/<id>/``),
                  a plugin's file; none for cells and experiments
  ``benchmarks``  every ``.py`` file of ``benchmarks/`` (``bench tightness`` cells only)
  ``experiments`` every ``.py`` file of ``experiments/`` (``iclkd experiment`` only)
  ==============  ===========================================================================

  So a change anywhere in ``iclkd_jax/`` invalidates every unit; a change to
  ``verification/statements/thm_4_1/check.py`` invalidates only thm-4.1's check, mutants and search targets;
  a change under ``benchmarks/`` invalidates only tightness cells.
* the **versions** of Python, JAX, jaxlib, NumPy, SciPy, this package, and the JAX backend.

Not covered: the processor and ``XLA_FLAGS`` (float64 results can differ in the last bits between
machine types); resume on the kind of machine that started the run.

Steps: a long check journals its independent steps on their own (:meth:`RunContext.checkpoint
<verification.core.model.RunContext.checkpoint>`, run by :func:`checkpoint`), under its unit's
fingerprint, so that a stopped check loses only the step in flight.

Layout of a journal folder ``DIR`` (default: beside the report, ``REPORT.journal/``)::

    DIR/run.json                 the run's command and arguments (what ``--resume`` must match)
    DIR/units/<unit>.json        one finished unit: fingerprint, result, SHA-256 of both
    DIR/steps/<unit>#<step>.json a finished step of a long unit (:func:`checkpoint`), the same format
    DIR/inflight/process-<i>     the unit process i was computing (informational)

Every entry is written atomically (a temporary file in the same folder, ``fsync``, ``os.replace``,
``fsync`` of the folder), by the process that computed the unit, so a killed run leaves whole
entries or none. An entry that does not parse or whose checksum does not match its content (a
truncated or corrupted file) is reported in one warning line and its unit is run again.

``--resume`` (:meth:`Journal.plan`): a run with other arguments (or another selection) than the
journaled run is refused with exit status 2, naming the difference. Otherwise every unit whose
journaled fingerprint equals its current one is reused; the others run, each with its reason printed
(``code changed: library (iclkd_jax/)``, ``versions changed: jax 0.4.30 -> 0.4.31``, ``arguments
changed: seed 0 -> 1`` for an entry left by an earlier run with other arguments, ``not journaled``).
Results are assembled in the canonical order, reused and recomputed alike, and every unit draws its
randomness from keys derived from the seed and its own id only, so the final report equals an
uninterrupted run's, timing fields aside. In a multi-process run (:mod:`verification.engine.distributed`)
process 0 reads the journal and every process follows its plan (the agreement is also a barrier: no
process writes an entry before all have planned), then the units left are dealt round robin.

SIGTERM (:class:`Grace`): what SLURM and Kubernetes send before killing a job. The unit in flight
finishes, is journaled, and the run stops before the next unit with exit status
:data:`EXIT_PREEMPTED` (75), printing what remains. If the unit in flight does not finish within the
grace period (``--grace S``, default 30 s) the process exits at once with the same status (that unit
is then rerun by ``--resume``). A run whose last unit finishes after SIGTERM completes normally.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import os
import platform
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from verification.core import process
from verification.core.arguments import positive_float
from verification.core.errors import CommandError, ExitStatus
from verification.engine import distributed

T = TypeVar("T")
R = TypeVar("R")

#: format of ``run.json`` and the unit entries; bump when either changes (older journals are then not reused)
FORMAT = 1
DEFAULT_GRACE_S = 30.0
#: exit status of a run stopped by SIGTERM after journaling (sysexits' EX_TEMPFAIL: "try again later")
EXIT_PREEMPTED = int(ExitStatus.PREEMPTED)

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]   # verification/
_REPO_ROOT = _PACKAGE_ROOT.parent


class Preempted(CommandError):
    """SIGTERM stopped the run between two units; the message says what was journaled and what remains."""

    def __init__(self, message: str):
        super().__init__(message, ExitStatus.PREEMPTED)


# ------------------------------------------------------------------------------------------ fingerprints


def _py_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _hash_files(files: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(set(files)):
        try:
            name = path.relative_to(_REPO_ROOT).as_posix()
        except ValueError:
            name = path.as_posix()
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _module_file(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"cannot locate the source of {name}")
    return Path(spec.origin).resolve()


def check_module_files() -> set[Path]:
    """The source files of the registered checks (their own modules; the ``unit`` scope)."""
    from verification.engine.plugins import all_checks

    return {Path(path) for cls in all_checks().values() for path in check_sources(cls)}


def _scope_files(scope: str) -> list[Path]:
    if scope == "library":
        return _py_files(_module_file("iclkd_jax").parent)
    if scope == "reference":
        return [_module_file("verification.oracles.reference")]
    if scope == "suite":
        excluded = {_module_file("verification.oracles.reference")} | check_module_files()
        return [p for p in _py_files(_PACKAGE_ROOT) if p.resolve() not in excluded]
    if scope in ("benchmarks", "experiments"):
        return _py_files(_REPO_ROOT / scope)
    raise ValueError(f"unknown scope {scope!r}; known: {', '.join(SCOPES)}")


#: the named code scopes a fingerprint can cover (module docstring), with what each names in a reason
SCOPES = {"library": "iclkd_jax/", "reference": "verification/oracles/reference.py", "suite": "verification/",
          "unit": "the unit's own code", "benchmarks": "benchmarks/", "experiments": "experiments/"}
#: the scopes every unit covers; a command adds its own (``benchmarks``, ``experiments``)
BASE_SCOPES = ("library", "reference", "suite")

_scope_hashes: dict[str, str] = {}


def scope_hash(scope: str) -> str:
    """The SHA-256 of a scope's source files (cached per process: the code does not change during a run)."""
    if scope not in _scope_hashes:
        _scope_hashes[scope] = _hash_files(_scope_files(scope))
    return _scope_hashes[scope]


def check_sources(cls: type) -> tuple[str, ...]:
    """The ``unit`` scope of a check, its mutants and search targets: a built-in statement's whole folder
    (``verification/statements/<id>/``: its check, search targets, certificate claims and tightness cells), else
    the check class's own module (a plugin's file)."""
    try:
        path = Path(inspect.getsourcefile(cls)).resolve()
    except (TypeError, OSError):  # a class defined interactively has no file
        return ()
    if path.parent.parent == _PACKAGE_ROOT / "statements":
        return tuple(str(p.resolve()) for p in _py_files(path.parent))
    return (str(path),)


def versions() -> dict[str, str]:
    """The versions a result may depend on: Python, JAX, jaxlib, NumPy, SciPy, this package, the backend."""
    from importlib import metadata

    import jax
    import jaxlib
    import numpy as np

    try:
        import scipy
        scipy_version = scipy.__version__
    except ImportError:
        scipy_version = "absent"
    try:
        package = metadata.version("iclkd-jax")
    except metadata.PackageNotFoundError:
        package = "unknown"
    return {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "numpy": np.__version__, "scipy": scipy_version, "iclkd-jax": package, "backend": jax.default_backend()}


@dataclasses.dataclass(frozen=True)
class Unit:
    """One unit of work: ``key`` (unique in its run, e.g. ``check/thm-4.1``), ``label`` (shown to people),
    ``sources`` (its own files: the ``unit`` scope) and ``scopes`` (the code scopes its fingerprint covers)."""

    key: str
    label: str
    sources: tuple[str, ...] = ()
    scopes: tuple[str, ...] = BASE_SCOPES

    def code(self) -> dict[str, str]:
        code = {scope: scope_hash(scope) for scope in self.scopes}
        if self.sources:
            code["unit"] = _hash_files(Path(s) for s in self.sources)
        return code


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    def show(value):
        return "(none)" if value is None else " ".join(map(str, value)) if isinstance(value, list) else str(value)

    return [f"{k} {show(old.get(k))} -> {show(new.get(k))}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def rerun_reason(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """Why a journaled fingerprint ``old`` does not allow reuse under ``new`` (None: it does)."""
    if old.get("arguments") != new.get("arguments") or old.get("command") != new.get("command"):
        changed = _differences(dict(old.get("arguments") or {}, command=old.get("command")),
                               dict(new.get("arguments") or {}, command=new.get("command")))
        return "arguments changed: " + ", ".join(changed)
    if old.get("code") != new.get("code"):
        scopes = sorted(k for k in set(old.get("code", {})) | set(new["code"])
                        if old.get("code", {}).get(k) != new["code"].get(k))
        return "code changed: " + ", ".join(f"{s} ({SCOPES.get(s, s)})" for s in scopes)
    if old.get("versions") != new.get("versions"):
        return "versions changed: " + ", ".join(_differences(old.get("versions") or {}, new["versions"]))
    if old != new:
        return "fingerprint changed"
    return None


# ----------------------------------------------------------------------------------------- entries


def _plain(value: Any) -> Any:
    """``value`` as JSON-compatible Python (arrays to lists, NumPy scalars to numbers); non-finite floats kept."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        import numpy as np

        arr = np.asarray(value)
        return _plain(arr.tolist()) if arr.ndim else arr.item()
    return value


def _dumps(value: Any, *, sort_keys: bool = False) -> str:
    # non-finite floats travel as JSON's NaN/Infinity extension (Python reads them back exactly); the keys keep
    # their order, so a reused result writes the same report file, byte for byte
    return json.dumps(value, sort_keys=sort_keys, allow_nan=True, separators=(",", ":"))


def _checksum(entry: Mapping[str, Any]) -> str:
    canonical = _dumps({k: v for k, v in entry.items() if k != "sha256"}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def write_durably(path: Path, text: str) -> None:
    """``text`` to ``path`` atomically and durably: a temporary file beside it, fsync, os.replace, fsync of
    the folder. Every process writes its own entries (unlike reports, which process 0 alone writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        folder = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(folder)
    except OSError:  # some filesystems cannot fsync a folder; the rename is still atomic
        pass
    finally:
        os.close(folder)


def _entry_name(key: str) -> str:
    slug = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in key)[:80]
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"


def read_entry(path: Path) -> tuple[dict | None, str | None]:
    """``(entry, None)``, or ``(None, problem)`` for a missing, truncated or corrupted entry."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as err:
        return None, f"unreadable ({err})"
    try:
        entry = json.loads(text)
    except ValueError:
        return None, f"truncated or corrupt (not valid JSON, {len(text)} bytes)"
    if not isinstance(entry, dict) or entry.get("sha256") != _checksum(entry):
        return None, "corrupt (its checksum does not match its content)"
    if entry.get("format") != FORMAT:
        return None, f"of another journal format ({entry.get('format')!r}, this is {FORMAT})"
    return entry, None


# ------------------------------------------------------------------------------------------ signals


class Grace:
    """SIGTERM handling (module docstring): a flag checked between units, and a deadline.

    The deadline is kept by a thread woken through :func:`signal.set_wakeup_fd`, so it holds even while
    the main thread is inside one long XLA computation (where Python-level handlers cannot run).
    """

    def __init__(self, grace_s: float, on_expiry: Callable[[], str]):
        self.grace_s = grace_s
        self.requested = threading.Event()
        self._on_expiry = on_expiry
        self._done = threading.Event()
        self._installed = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only; a run driven from another thread keeps the defaults
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._old_handler = signal.signal(signal.SIGTERM, self._on_signal)
        self._old_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        threading.Thread(target=self._watch, name="iclkd-grace", daemon=True).start()
        self._installed = True

    def uninstall(self) -> None:
        self._done.set()
        if not self._installed:
            return
        signal.set_wakeup_fd(self._old_fd)
        signal.signal(signal.SIGTERM, self._old_handler)
        self._writer.close()  # the watcher's recv returns b"" and it ends
        self._installed = False

    def _on_signal(self, signum, frame) -> None:
        self.requested.set()

    def _watch(self) -> None:
        with self._reader:
            try:
                while True:
                    data = self._reader.recv(64)
                    if not data:  # uninstalled
                        return
                    if signal.SIGTERM in data:
                        break
            except OSError:
                return
            self.requested.set()
            if self._done.wait(self.grace_s):
                return
            try:
                os.write(2, (self._on_expiry() + "\n").encode())
            finally:
                os._exit(EXIT_PREEMPTED)


# ------------------------------------------------------------------------------------------ the journal


class Journal:
    """The journal of one run (module docstring). Use as a context manager: it installs the SIGTERM
    handling on entry and removes it on exit.

    Args:
      folder: the journal folder (created).
      command: ``verify``, ``verify --self-test``, ``search``, ``bench tightness``, ``experiment NAME``.
      arguments: what a unit's result depends on (profile, seed, ...): part of every fingerprint.
      selection: which units the run comprises (``--only`` ids, a search id); with ``arguments`` what
        ``--resume`` must match.
      resume: reuse matching entries (else every unit runs and overwrites its entry).
      grace_s: the SIGTERM grace period.
      prog: the command's name in messages (``iclkd verify``).
    """

    def __init__(self, folder: str | os.PathLike, command: str, arguments: Mapping[str, Any], *,
                 selection: Mapping[str, Any] | None = None, resume: bool = False,
                 grace_s: float = DEFAULT_GRACE_S, prog: str = "iclkd", out=None):
        self.folder = Path(folder)
        self.command = command
        self.arguments = _plain(dict(arguments))
        self.selection = _plain(dict(selection or {}))
        self.resume = resume
        self.prog = prog
        self.out = out
        self.units: list[Unit] = []
        self.reused: dict[str, Any] = {}
        self.reasons: dict[str, str] = {}
        self.inflight: dict[int, str] = {}
        self.grace = Grace(grace_s, self._expiry_message)
        self._versions: dict[str, str] | None = None
        self._current: Unit | None = None

    # the context: signals
    def __enter__(self) -> Journal:
        self.grace.install()
        return self

    def __exit__(self, *exc) -> None:
        self.grace.uninstall()

    def _say(self, text: str) -> None:
        if _is_root():
            print(f"{self.prog}: {text}", file=self.out or sys.stderr, flush=True)

    # fingerprints and entries
    def fingerprint(self, unit: Unit) -> dict[str, Any]:
        if self._versions is None:
            self._versions = versions()
        return {"command": self.command, "arguments": self.arguments, "unit": unit.key, "code": unit.code(),
                "versions": self._versions}

    def path(self, unit: Unit) -> Path:
        return self.folder / "units" / _entry_name(unit.key)

    def _run_record(self) -> dict[str, Any]:
        return {"format": FORMAT, "command": self.command, "arguments": self.arguments, "selection": self.selection}

    def _check_arguments(self) -> bool:
        """Refuses a resume with other arguments (exit 2); True if a journaled run was found."""
        try:
            journaled = json.loads((self.folder / "run.json").read_text())
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            self._say(f"warning: {self.folder / 'run.json'} is unreadable; resuming unit by unit")
            return False
        mine = self._run_record()
        if journaled.get("format") != FORMAT:
            self._say(f"warning: the journal in {self.folder} has format {journaled.get('format')!r}, not {FORMAT}; "
                      f"nothing is reused")
            return False
        if journaled != mine:
            old = dict(journaled.get("arguments") or {}, **(journaled.get("selection") or {}),
                       command=journaled.get("command"))
            new = dict(mine["arguments"], **mine["selection"], command=mine["command"])
            raise CommandError(f"--resume with other arguments than the journaled run in {self.folder}: "
                               f"{'; '.join(_differences(old, new))} (journaled -> given); resume with the "
                               f"journaled arguments, or run without --resume to start over")
        return True

    def plan(self, units: Sequence[Unit]) -> dict[str, Any]:
        """Decides which units are reused; returns ``{unit key: journaled result}`` (the same in every process).

        Raises:
          CommandError: ``--resume`` with other arguments or selection than the journaled run (exit 2).
        """
        self.units = list(units)
        found = self._check_arguments() if self.resume else False
        decision: dict[str, Any] = {"reused": {}, "reasons": {}, "warnings": [], "inflight": {}}
        if self.resume:
            for unit in self.units:
                entry, problem = read_entry(self.path(unit))
                if problem:
                    decision["warnings"].append(f"warning: journal entry {self.path(unit)} ({unit.label}) is "
                                                f"{problem}; {unit.label} is run again")
                    decision["reasons"][unit.key] = f"journal entry {problem.split(' (')[0]}"
                    continue
                if entry is None:
                    decision["reasons"][unit.key] = "not journaled"
                    continue
                reason = rerun_reason(entry["fingerprint"], self.fingerprint(unit))
                if reason is None:
                    decision["reused"][unit.key] = entry["result"]
                else:
                    decision["reasons"][unit.key] = reason
            decision["inflight"] = self._read_inflight()
        decision = distributed.root_value(decision) if _multi_process() else decision
        self.reused, self.reasons = decision["reused"], decision["reasons"]
        for warning in decision["warnings"]:
            self._say(warning)
        if _is_root() and (not self.resume or not found):
            write_durably(self.folder / "run.json", json.dumps(self._run_record(), indent=1) + "\n")
        if self.resume:
            self._report_plan(found, decision["inflight"])
        return self.reused

    def _report_plan(self, found: bool, inflight: dict[str, str]) -> None:
        if not found and not self.reused:
            self._say(f"--resume: no journaled run in {self.folder}; running all {len(self.units)} unit(s)")
            return
        labels = {u.key: u.label for u in self.units}
        rerun = [k for k in labels if k not in self.reused]
        stopped = [labels.get(k, k) for k in inflight.values() if k in labels]
        self._say(f"--resume from {self.folder}: {len(self.reused)} of {len(self.units)} unit(s) reused, "
                  f"{len(rerun)} to run" + (f" (in flight when the run stopped: {', '.join(stopped)})" if stopped
                                            else ""))
        fresh = [labels[k] for k in rerun if self.reasons.get(k, "not journaled") == "not journaled"]
        if fresh:
            self._say(f"  run {len(fresh)} not journaled: {', '.join(fresh[:10])}"
                      + (f", ... ({len(fresh) - 10} more)" if len(fresh) > 10 else ""))
        for key in rerun:  # the units whose entry is there but cannot be reused, each with its reason
            if labels[key] not in fresh:
                self._say(f"  run {labels[key]}: {self.reasons[key]}")

    def _read_inflight(self) -> dict[str, str]:
        found = {}
        for path in sorted((self.folder / "inflight").glob("process-*")):
            try:
                key = path.read_text().strip()
            except OSError:
                continue
            if key:
                found[path.name] = key
        return found

    def _mark(self, unit: Unit | None) -> None:
        self._current = unit
        marker = self.folder / "inflight" / f"process-{process.process_index() if _multi_process() else 0}"
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(unit.key if unit else "")
        except OSError:  # informational only
            pass

    def begin(self, unit: Unit) -> None:
        """Called before a unit runs: stops the run if SIGTERM came (raises :class:`Preempted`)."""
        if self.grace.requested.is_set():
            raise Preempted(self._stop_message("SIGTERM: stopped between two units"))
        self._mark(unit)

    def record(self, unit: Unit, result: Any) -> None:
        """Journals a finished unit atomically (the result as JSON-compatible data, with its fingerprint)."""
        self.write_entry(self.path(unit), unit, result)
        self._mark(None)

    def write_entry(self, path: Path, unit: Unit, result: Any) -> None:
        entry = {"format": FORMAT, "unit": unit.key, "label": unit.label, "fingerprint": self.fingerprint(unit),
                 "result": _plain(result), "written": time.time()}
        entry["sha256"] = _checksum(entry)
        write_durably(path, _dumps(entry) + "\n")

    def remaining(self) -> list[Unit]:
        """The planned units with no valid entry in the journal now (any process's)."""
        return [u for u in self.units if read_entry(self.path(u))[0] is None]

    def _stop_message(self, how: str) -> str:
        left = self.remaining()
        shown = ", ".join(u.label for u in left[:20]) + (f", ... ({len(left) - 20} more)" if len(left) > 20 else "")
        return (f"{how}; {len(self.units) - len(left)} of {len(self.units)} unit(s) journaled in {self.folder}; "
                f"remaining: {shown or 'none'}; rerun the same command with --resume to finish")

    def _expiry_message(self) -> str:
        current = self._current.label if self._current else "none"
        return f"{self.prog}: " + self._stop_message(
            f"SIGTERM: the unit in flight ({current}) did not finish within the {self.grace.grace_s:g} s grace "
            f"period and is not journaled")


def _multi_process() -> bool:
    return process.process_count() > 1


def _is_root() -> bool:
    return process.is_writer()


# ------------------------------------------------------------------------------------------ running units


def map_units(items: Sequence[T], compute: Callable[[T], R], *, journal: Journal | None,
              unit_of: Callable[[T], Unit], decode: Callable[[Any], R],
              wrap: Callable[[Iterable], Iterable] = lambda items: items, collective: bool = False) -> Iterator[R]:
    """``compute(item)`` for every item, in item order, through the journal (module docstring).

    Without a journal: a plain loop, or :func:`verification.engine.distributed.distributed_map` over several
    processes. With one: journaled results are reused (``decode(record)`` turns a record back into a
    result), the rest computed (item ``j`` of what is left by process ``j mod N``) and journaled one by
    one. ``wrap`` wraps the one-process loop (a progress bar). ``collective``: every process takes part
    in every unit (the tightness cells shard their draws over all processes' devices); process 0
    journals them.
    """
    count = 1 if collective else process.process_count()
    if journal is None:
        if count > 1:
            yield from distributed.distributed_map(compute, items)
        else:
            for item in wrap(items):
                yield compute(item)
        return
    units = [unit_of(item) for item in items]
    reused = journal.plan(units)

    def run_one(j: int) -> R:
        journal.begin(units[j])
        with _in_flight(journal, units[j]):
            result = compute(items[j])
        if not collective or _is_root():
            journal.record(units[j], result)
        return result

    todo = [j for j, unit in enumerate(units) if unit.key not in reused]
    if count > 1:
        computed = dict(zip(todo, distributed.distributed_map(run_one, todo), strict=False))
        for j, unit in enumerate(units):
            yield computed[j] if j in computed else decode(reused[unit.key])
        return
    for j in wrap(range(len(items))):
        yield decode(reused[units[j].key]) if units[j].key in reused else run_one(j)


#: the journal and unit in flight in this process (for :func:`checkpoint`)
_current: tuple[Journal, Unit] | None = None


@contextlib.contextmanager
def _in_flight(journal: Journal, unit: Unit):
    global _current
    _current = (journal, unit)
    try:
        yield
    finally:
        _current = None


def checkpoint(ctx, name: str, compute: Callable[[], Any]) -> Any:
    """One step of a check in flight, journaled on its own: ``compute()`` as plain JSON-compatible data.

    What :meth:`RunContext.checkpoint <verification.core.model.RunContext.checkpoint>` runs. A long check
    (one looping over independent settings, each from its own key) calls it for each step; the steps of
    a unit that did not finish are reused by ``--resume`` under the unit's fingerprint (so only the step
    in flight is lost), and the unit itself is journaled as usual when it finishes. A step is named by
    the check, its mutant, profile and seed as well as ``name``: the self-test's baseline and mutant runs
    inside one unit keep apart. The value returned is always the plain form (NumPy scalars as Python
    numbers, arrays as lists), with or without a journal, so a reused step and a computed one give the
    same report.
    """
    if _current is None:
        return _plain(compute())
    journal, unit = _current
    name = f"{ctx.check_id}/{ctx.mutant or 'unmutated'}/{ctx.profile.name}/{ctx.seed}/{name}"
    step = Unit(f"{unit.key}#{name}", f"{unit.label} step {name}", unit.sources, unit.scopes)
    path = journal.folder / "steps" / _entry_name(step.key)
    if journal.resume:
        entry, _ = read_entry(path)
        if entry is not None and rerun_reason(entry["fingerprint"], journal.fingerprint(step)) is None:
            return entry["result"]
    result = _plain(compute())
    journal.write_entry(path, step, result)
    return result


def _install_step_runner() -> None:
    from verification.core import model as registry

    registry.STEP_RUNNER = checkpoint  # RunContext.checkpoint journals its steps


_install_step_runner()


def decode_as(cls: type) -> Callable[[Any], Any]:
    """A ``decode`` for :func:`map_units` whose results are dataclasses: ``cls(**record)``."""
    return lambda record: cls(**record)


# ------------------------------------------------------------------------------------------ the command line


def add_arguments(parser, *, default: str = "beside the report") -> None:
    """``--journal DIR``, ``--resume`` and ``--grace S`` (module docstring)."""
    parser.add_argument("--journal", metavar="DIR", default=None,
                        help=f"journal each finished unit here, atomically (default: {default})")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the units journaled by an earlier run with the same arguments whose code and "
                             "versions are unchanged; run the rest (docs/distributed.md)")
    parser.add_argument("--grace", type=positive_float, default=DEFAULT_GRACE_S, metavar="S",
                        help=f"on SIGTERM, finish the unit in flight if it takes at most S more seconds, journal it "
                             f"and exit {EXIT_PREEMPTED} (default %(default)s)")


def beside(report: str | os.PathLike | None) -> Path | None:
    """The default journal folder of a report file: ``REPORT.journal`` beside it."""
    if report is None:
        return None
    report = Path(report)
    return report.with_name(report.name + ".journal")


def from_args(args, command: str, arguments: Mapping[str, Any], *, selection: Mapping[str, Any] | None = None,
              default: Path | None, prog: str) -> Journal | None:
    """The run's :class:`Journal` from ``--journal``/``--resume``/``--grace`` (None: no journal: neither
    ``--journal`` nor a report to put it beside)."""
    from verification.core.errors import OutputError
    from verification.core.outputs import check_output_dir

    folder = getattr(args, "journal", None) or default
    if folder is None:
        if getattr(args, "resume", False):
            raise CommandError("--resume needs a journal: give --journal DIR (or the report path the journal is "
                               "kept beside)")
        return None
    try:
        folder = check_output_dir(folder)
    except OutputError as err:
        raise CommandError(f"--journal: {err}") from None
    return Journal(folder, command, arguments, selection=selection, resume=getattr(args, "resume", False),
                   grace_s=getattr(args, "grace", DEFAULT_GRACE_S), prog=prog)


def active(journal: Journal | None):
    """``with active(journal):`` the journal's signal handling (nothing without a journal)."""
    return journal if journal is not None else contextlib.nullcontext()
