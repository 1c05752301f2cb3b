"""Process identity in a multi-process run: the ``ICLKD_*`` environment, ``jax.distributed`` initialisation,
which process this is and whether it writes files.

Every process runs the same ``iclkd`` command line. Before any JAX backend is touched, :func:`initialize`
reads the environment and calls :func:`jax.distributed.initialize`:

* ``ICLKD_COORDINATOR=host:port``, ``ICLKD_NUM_PROCESSES=N``, ``ICLKD_PROCESS_ID=i``: explicit
  (this is what ``iclkd launch`` sets); with ``ICLKD_LOOPBACK=1`` the coordinator *and* the gloo
  collectives bind to 127.0.0.1 only (JAX's default coordinator binds to every interface);
* ``ICLKD_DISTRIBUTED=auto``: JAX's own cluster detection (SLURM, Open MPI, Cloud TPU pods);
* neither: a single process, nothing happens.

Process 0 alone prints the report and writes files (:func:`is_root`, :func:`is_writer`). The split of the
work and the launcher are in :mod:`verification.engine.distributed`.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
from jax._src import xla_bridge  # the CPU backend factory: JAX exposes no public hook for the gloo host name

from verification.core.errors import DistributedConfigError

ENV_COORDINATOR = "ICLKD_COORDINATOR"
ENV_NUM_PROCESSES = "ICLKD_NUM_PROCESSES"
ENV_PROCESS_ID = "ICLKD_PROCESS_ID"
ENV_LOOPBACK = "ICLKD_LOOPBACK"
ENV_INIT_TIMEOUT = "ICLKD_INIT_TIMEOUT"
ENV_AUTO = "ICLKD_DISTRIBUTED"

DEFAULT_INIT_TIMEOUT_S = 60


def _env_int(name: str, env: dict[str, str]) -> int:
    raw = env[name]
    try:
        return int(raw)
    except ValueError:
        raise DistributedConfigError(f"{name} must be an integer, got {raw!r}") from None


def requested(env: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The ``jax.distributed.initialize`` arguments the environment asks for, or None (one process).

    Raises:
      DistributedConfigError: a partial or inconsistent explicit configuration.
    """
    env = dict(os.environ if env is None else env)
    explicit = [name for name in (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID) if env.get(name)]
    if not explicit:
        if env.get(ENV_AUTO, "").lower() == "auto":
            return {}
        return None
    if len(explicit) != 3:
        missing = sorted({ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID} - set(explicit))
        raise DistributedConfigError(f"a multi-process run needs {', '.join(missing)} as well as {', '.join(explicit)}")
    num_processes = _env_int(ENV_NUM_PROCESSES, env)
    process_id = _env_int(ENV_PROCESS_ID, env)
    if num_processes < 1:
        raise DistributedConfigError(f"{ENV_NUM_PROCESSES} must be >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise DistributedConfigError(f"{ENV_PROCESS_ID} must be in [0, {num_processes}), got {process_id}")
    coordinator = env[ENV_COORDINATOR]
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise DistributedConfigError(f"{ENV_COORDINATOR} must be host:port, got {coordinator!r}")
    kwargs: dict[str, Any] = {"coordinator_address": coordinator, "num_processes": num_processes,
                              "process_id": process_id}
    timeout = _env_int(ENV_INIT_TIMEOUT, env) if env.get(ENV_INIT_TIMEOUT) else DEFAULT_INIT_TIMEOUT_S
    if timeout < 1:
        raise DistributedConfigError(f"{ENV_INIT_TIMEOUT} must be >= 1 second, got {timeout}")
    kwargs["initialization_timeout"] = timeout
    if env.get(ENV_LOOPBACK) == "1":
        kwargs["coordinator_bind_address"] = f"127.0.0.1:{port}"
    return kwargs


def _bind_gloo_to_loopback() -> None:
    """Makes the gloo CPU collectives listen on 127.0.0.1 instead of the host name's address.

    JAX creates them inside its CPU backend factory without exposing ``hostname``; wrapping the
    factory function it calls is the only hook. Only used for ``iclkd launch`` (one machine).
    """
    original = xla_bridge._jax.make_gloo_tcp_collectives
    if getattr(original, "_iclkd_loopback", False):
        return
    wrapped = functools.partial(original, hostname="127.0.0.1")
    wrapped._iclkd_loopback = True  # type: ignore[attr-defined]
    xla_bridge._jax.make_gloo_tcp_collectives = wrapped


#: this process's index once :func:`initialize` has set up a multi-process run (None: one process)
_initialized_index: int | None = None


def initialize(env: dict[str, str] | None = None) -> bool:
    """Initialises ``jax.distributed`` when the environment asks for it; True if it did.

    Call it before anything touches a JAX backend (the ``iclkd`` entry point does).
    """
    global _initialized_index
    kwargs = requested(env)
    if kwargs is None:
        return False
    if (os.environ if env is None else env).get(ENV_LOOPBACK) == "1":
        _bind_gloo_to_loopback()
    jax.distributed.initialize(**kwargs)
    _initialized_index = jax.process_index()
    return True


def is_writer() -> bool:
    """False only in the processes other than 0 of a run set up by :func:`initialize`.

    :mod:`verification.core.outputs` asks it before renaming a finished file into place, so that process 0
    alone writes reports, CSVs, plots and checkpoints.
    """
    return _initialized_index in (None, 0)


def process_index() -> int:
    return jax.process_index()


def process_count() -> int:
    return jax.process_count()


def is_root() -> bool:
    """True in the process that prints and writes (process 0; the only one in a single-process run)."""
    return process_index() == 0
