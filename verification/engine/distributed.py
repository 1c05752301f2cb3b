"""Several processes with ``jax.distributed``: the split of the work, the gather, the local launcher.

How a multi-process run works (docs/distributed.md has the recipes for SLURM, GPU nodes and TPU pods):

1. Every process runs the same ``iclkd`` command line and initialises ``jax.distributed`` from the
   ``ICLKD_*`` environment before any backend use (:mod:`verification.core.process`).

2. The work is a list of independent items (checks, mutants, sweep cells, search targets).
   :func:`distributed_map` gives item ``j`` to process ``j mod N``; each process computes its items
   on its local devices with the item's own key (a function of the seed and the item, never of the
   process), then every process receives every result in item order (the pickled results travel
   through the coordination service's key-value store). The outcome is therefore identical, figure for
   figure, to a one-process run.
   Monte-Carlo sweeps that are one big batch instead use :mod:`iclkd_jax.sharding`, whose draws are
   split over every device of every process with the same guarantee.

3. Process 0 alone prints the report and writes files (:func:`verification.core.process.is_root`).

Pitfalls this module handles: a peer that never starts makes the others abort with SIGABRT after the
initialisation timeout, with no Python exception: :func:`launch` watches its children and turns
that into a one-line message and exit status :data:`EXIT_LAUNCH_FAILED`.
"""

from __future__ import annotations

import itertools
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from jax._src.distributed import global_state  # the runtime's client: JAX has no public key-value API

from verification.core.errors import ExitStatus
from verification.core.process import (
    DEFAULT_INIT_TIMEOUT_S,
    ENV_AUTO,
    ENV_COORDINATOR,
    ENV_INIT_TIMEOUT,
    ENV_LOOPBACK,
    ENV_NUM_PROCESSES,
    ENV_PROCESS_ID,
    process_count,
    process_index,
)

T = TypeVar("T")
R = TypeVar("R")

#: exit status of ``iclkd launch`` when a process died abnormally or a peer never connected
EXIT_LAUNCH_FAILED = int(ExitStatus.LAUNCH_FAILED)

#: distributed_map calls so far in this process (every process makes the same calls in the same order)
_gather_calls = itertools.count()
#: the coordination service carries the gathered results in pieces of this size (gRPC messages are bounded)
_PIECE = 1 << 20
#: how long a process waits for a peer's results: a peer that dies is reported by the launcher or the
#: coordination service's heartbeats long before this
_GATHER_TIMEOUT_MS = 7 * 24 * 3600 * 1000


def _allgather_bytes(payload: bytes) -> list[bytes]:
    """Every process's ``payload``, in process order, through the coordination service's key-value store.

    Not a collective (``process_allgather``): the gloo CPU collectives give up when one process reaches
    them more than 30 s before another, which unequal shares of checks or search targets do routinely.
    """
    client = global_state.client
    call, me, count = next(_gather_calls), process_index(), process_count()
    prefix = f"iclkd/gather/{call}"
    pieces = [payload[i:i + _PIECE] for i in range(0, len(payload), _PIECE)] or [b""]
    for i, piece in enumerate(pieces):
        client.key_value_set_bytes(f"{prefix}/{me}/{i}", piece)
    client.key_value_set(f"{prefix}/{me}/pieces", str(len(pieces)))  # last: its presence means complete
    gathered = []
    for rank in range(count):
        if rank == me:
            gathered.append(payload)
            continue
        n = int(client.blocking_key_value_get(f"{prefix}/{rank}/pieces", _GATHER_TIMEOUT_MS))
        gathered.append(b"".join(client.blocking_key_value_get_bytes(f"{prefix}/{rank}/{i}", _GATHER_TIMEOUT_MS)
                                 for i in range(n)))
    return gathered


def distributed_map(fn: Callable[[T], R], items: Sequence[T], *,
                    on_result: Callable[[int, R], None] | None = None) -> list[R]:
    """``[fn(item) for item in items]``, item ``j`` computed by process ``j mod N``.

    Every process returns the full list in item order. ``fn`` must not depend on which process
    runs it (use the item's own key) and must use only local devices. ``on_result(j, r)`` is
    called in the computing process as each of its results is ready (progress display).
    With one process this is a plain loop.
    """
    count, index = process_count(), process_index()
    local: list[tuple[int, R]] = []
    for j in range(index, len(items), count):
        result = fn(items[j])
        local.append((j, result))
        if on_result is not None:
            on_result(j, result)
    if count == 1:
        return [r for _, r in local]
    merged: dict[int, R] = {}
    for blob in _allgather_bytes(pickle.dumps(local)):
        merged.update(dict(pickle.loads(blob)))
    if len(merged) != len(items):
        raise RuntimeError(f"distributed_map gathered {len(merged)} results for {len(items)} items")
    return [merged[j] for j in range(len(items))]


def root_value(value: T) -> T:
    """Process 0's ``value`` (picklable) in every process; also a barrier: no process returns before every
    process has called it. The run journal agrees on its plan with it (verification.engine.journal)."""
    if process_count() == 1:
        return value
    return pickle.loads(_allgather_bytes(pickle.dumps(value) if process_index() == 0 else b"")[0])


def local_items(items: Iterable[T]) -> list[T]:
    """The items this process computes in :func:`distributed_map` (for progress bars)."""
    count, index = process_count(), process_index()
    return [item for j, item in enumerate(items) if j % count == index]


# ---------------------------------------------------------------------------------------------
# The local launcher: ``iclkd launch -n N -- COMMAND ...``
# ---------------------------------------------------------------------------------------------

def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


def _tail(path: str, lines: int = 3) -> str:
    try:
        with open(path, errors="replace") as handle:
            text = [line.rstrip() for line in handle if line.strip()]
    except OSError:
        return ""
    # JAX's C++ logging prefixes ("E0000 ...", "F0000 ...") carry the reason of an abort
    native = [line for line in text if line.startswith(("E", "F")) and _NATIVE_LOG.match(line)]
    if native:  # "F1201 06:09:25.38 11488 client.h:80] Terminating process because ... absl::Status: X"
        message = native[-1].split("] ", 1)[-1]
        status = message.rsplit("absl::Status: ", 1)[1] if "absl::Status: " in message else ""
        return f"JAX: {message.split('. ')[0]}" + (f" ({status})" if status else "")
    return " | ".join(text[-lines:])


_NATIVE_LOG = re.compile(r"^([IWEF]\d{4} |\s+@\s+0x|\*\*\* Check failure|RPC: |\[Gloo\] )")


def _relay_stderr(stream, log_path: str) -> None:
    """Copies process 0's stderr to ours, keeping JAX's native log lines and stack dumps in a file.

    Those lines (``F1201 ... Terminating process ...``, ``@ 0x7f...``) are what an abort looks like;
    the launcher summarises them in one line instead of printing a C++ stack trace.
    """
    with open(log_path, "w") as log:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace")
            log.write(line)
            if not _NATIVE_LOG.match(line):
                sys.stderr.write(line)
                sys.stderr.flush()


def launch(num_processes: int, command: Sequence[str], *, init_timeout_s: int = DEFAULT_INIT_TIMEOUT_S,
           start_ranks: Sequence[int] | None = None, python: str = sys.executable,
           env: dict[str, str] | None = None, poll_s: float = 0.1, module: str = "verification") -> int:
    """Runs ``python -m verification COMMAND...`` as ``num_processes`` local processes on loopback.

    Process 0's output is streamed; the others' go to temporary files, whose last lines are shown
    if one of them fails. Returns process 0's exit status when every process finished normally,
    else prints one line saying which process failed and how and returns :data:`EXIT_LAUNCH_FAILED`
    (the remaining processes are terminated).

    Args:
      num_processes: N >= 1.
      command: the ``iclkd`` arguments, e.g. ``["verify", "--profile", "quick"]``.
      init_timeout_s: how long a process waits for its peers in ``jax.distributed.initialize``
        (then JAX aborts it; the launcher reports the peers that never connected).
      start_ranks: the ranks to start (default all); starting fewer is how the tests simulate a
        peer that never starts.
      module: the module run with ``python -m`` (the tests use a small one).
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if init_timeout_s < 1:
        raise ValueError(f"init_timeout_s must be >= 1, got {init_timeout_s}")
    if not command:
        raise ValueError("command is empty: give the iclkd subcommand to run, e.g. `verify --profile quick`")
    ranks = list(range(num_processes)) if start_ranks is None else sorted(set(start_ranks))
    if any(not 0 <= r < num_processes for r in ranks):
        raise ValueError(f"start_ranks must lie in [0, {num_processes}), got {list(start_ranks or [])}")
    port = free_loopback_port()
    base_env = dict(os.environ if env is None else env)
    base_env.update({ENV_COORDINATOR: f"127.0.0.1:{port}", ENV_NUM_PROCESSES: str(num_processes),
                     ENV_LOOPBACK: "1", ENV_INIT_TIMEOUT: str(init_timeout_s)})
    base_env.pop(ENV_AUTO, None)
    logdir = tempfile.mkdtemp(prefix="iclkd-launch-")
    procs: dict[int, subprocess.Popen] = {}
    logs: dict[int, str] = {}
    started = time.monotonic()
    terminated = threading.Event()

    def forward_sigterm(signum, frame):  # a preempted job: every process journals its unit in flight and ends
        terminated.set()
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, forward_sigterm) if main_thread else None
    try:
        for rank in ranks:
            child_env = dict(base_env, **{ENV_PROCESS_ID: str(rank)})
            argv = [python, "-m", module, *command]
            if rank == 0:
                logs[rank] = os.path.join(logdir, "process-0.stderr")
                procs[rank] = subprocess.Popen(argv, env=child_env, stderr=subprocess.PIPE)
                threading.Thread(target=_relay_stderr, args=(procs[rank].stderr, logs[rank]), daemon=True).start()
            else:
                logs[rank] = os.path.join(logdir, f"process-{rank}.log")
                with open(logs[rank], "w") as log:
                    procs[rank] = subprocess.Popen(argv, env=child_env, stdout=log, stderr=subprocess.STDOUT)
        return _watch(procs, logs, num_processes, ranks, init_timeout_s, started, poll_s, terminated)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


#: statuses of the iclkd exit table (:class:`~verification.core.errors.ExitStatus`); anything else is a crash
EXIT_TABLE = tuple(int(s) for s in ExitStatus if s != ExitStatus.LAUNCH_FAILED)
#: once one process has ended normally, how long the others get to end too
GRACE_S = 30.0


def _watch(procs: dict[int, subprocess.Popen], logs: dict[int, str], num_processes: int, ranks: list[int],
           init_timeout_s: int, started: float, poll_s: float, terminated: threading.Event | None = None) -> int:
    missing = [r for r in range(num_processes) if r not in procs]
    first_end: float | None = None
    while True:
        codes = {rank: proc.poll() for rank, proc in procs.items()}
        if terminated is not None and terminated.is_set():  # SIGTERM forwarded: each process ends in its grace
            if all(code is not None for code in codes.values()):
                code = codes.get(0, EXIT_LAUNCH_FAILED)
                return code if code >= 0 else 128 - code
            time.sleep(poll_s)
            continue
        crashed = {rank: code for rank, code in codes.items()
                   if code is not None and (code < 0 or code not in EXIT_TABLE)}
        ended = [rank for rank, code in codes.items() if code is not None]
        if ended and first_end is None:
            first_end = time.monotonic()
        root_done = codes.get(0) is not None and not crashed
        # process 0 failing normally (a usage error, a violated theorem) decides at once: the others
        # may be waiting for it in a collective; a success waits for the others to end too
        if root_done and (codes[0] != 0 or all(code is not None for code in codes.values())
                          or time.monotonic() - first_end > GRACE_S):
            return int(codes[0])
        stalled = first_end is not None and time.monotonic() - first_end > GRACE_S
        if crashed or (stalled and not root_done):
            rank, code = min(crashed.items()) if crashed else min((r, codes[r]) for r in ended)
            elapsed = time.monotonic() - started
            reason = f"process {rank} of {num_processes} {_describe_exit(code)} after {elapsed:.1f} s"
            if not crashed:
                reason += f" while process 0 was still running {GRACE_S:.0f} s later"
            if missing:
                reason += (f"; process(es) {', '.join(map(str, missing))} never started, so the others gave up "
                           f"waiting for them after the {init_timeout_s} s initialisation timeout")
            detail = _tail(logs[rank]) if rank in logs else ""
            print(f"iclkd launch: {reason}{': ' + detail if detail else ''}", file=sys.stderr, flush=True)
            return EXIT_LAUNCH_FAILED
        time.sleep(poll_s)
