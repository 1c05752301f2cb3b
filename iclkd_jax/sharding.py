"""Monte-Carlo draws and parameter sweeps sharded across every JAX device (and host).

The unit of work in the suite is "run ``fn`` once per draw" (a random key) or "once
per point of a sweep" (a parameter). :func:`sharded_vmap` runs ``jax.vmap(fn)`` with
the batch axis split over a one-dimensional device mesh (``jax.sharding.Mesh`` +
``NamedSharding``): each device computes its slice of the draws, no communication
except the final gather. Keys are split on the host *before* sharding, so the
draws, and therefore the results, do not depend on how many devices there are:
a run on 1 CPU, on 4 forced host devices or on 8 GPUs gives the same arrays.

Single host, several devices: nothing to do, every local device is used.
CPU only, to test the sharded path: set
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` *before* JAX is imported.

Several hosts (one process per host, same program, same seed)::

    import iclkd_jax.sharding as sh
    sh.initialize_distributed(coordinator_address="10.0.0.1:1234",
                              num_processes=4, process_id=RANK)  # or no arguments on
                                                                 # SLURM / TPU pods / Open MPI
    out = sh.monte_carlo(fn, jax.random.key(0), 10_000)        # every device of every host
    out = sh.gather(out)                                         # host-local NumPy copy

The batch is built identically on every host (a deterministic function of the seed);
each process materialises only its own shards (``jax.make_array_from_callback``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from iclkd_jax import _validation as V
from iclkd_jax._compile import counted_jit

AXIS = "draws"


def initialize_distributed(*, coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, **kwargs: Any) -> None:
    """``jax.distributed.initialize(...)``, once; call it before any other JAX computation.

    Without arguments JAX detects SLURM, Open MPI and Cloud TPU environments; otherwise
    pass all three of ``coordinator_address`` (``"host:port"``), ``num_processes``
    (>= 1) and ``process_id`` (``0 <= process_id < num_processes``); other keyword
    arguments go to :func:`jax.distributed.initialize` unchanged. The arguments are
    validated here, before JAX tries to connect (a typo would otherwise surface as a
    connection timeout). A second call is a no-op, so library code may call it
    defensively.

    Raises:
      ValueError: an incomplete or malformed set of the three arguments.
    """
    explicit = {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id}
    given = {name for name, value in explicit.items() if value is not None}
    if given and len(given) != 3:
        missing = sorted(set(explicit) - given)
        raise ValueError(f"initialize_distributed: give coordinator_address, num_processes and process_id together "
                         f"(or none, for auto-detection); missing {missing}")
    if given:
        host, sep, port = str(coordinator_address).rpartition(":")
        if not isinstance(coordinator_address, str) or not sep or not host or not port.isdigit() \
                or not 0 < int(port) < 65536:
            raise ValueError(f"coordinator_address must be 'host:port' with a port in 1..65535, got {coordinator_address!r}")
        num_processes = V.positive_int(num_processes, "num_processes")
        process_id = V.positive_int(process_id, "process_id", minimum=0)
        if process_id >= num_processes:
            raise ValueError(f"process_id must be in [0, num_processes) = [0, {num_processes}), got {process_id}")
        kwargs.update(explicit, num_processes=num_processes, process_id=process_id)
    if jax.distributed.is_initialized():
        return
    jax.distributed.initialize(**kwargs)


def device_mesh(devices: Any = None, *, axis_name: str = AXIS) -> Mesh:
    """A one-dimensional mesh over ``devices`` (default: all devices of all processes)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("device_mesh needs at least one device")
    return Mesh(np.asarray(devices), (axis_name,))


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_global(leaf: Any, sharding: NamedSharding) -> tuple[jax.Array, Any]:
    """Places a host value on ``sharding``; typed keys travel as their raw uint32 data."""
    impl = None
    if _is_key(leaf):
        impl = jax.random.key_impl(leaf)
        leaf = jax.random.key_data(leaf)
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index]), impl


@functools.lru_cache(maxsize=256)
def _batched(fn: Callable[..., Any], mesh: Mesh, chunk_size: int, batch_impls: Any, arg_impls: Any,
             batch_tree: Any, arg_tree: Any):
    def wrap(leaves, impls, tree):
        leaves = [leaf if impl is None else jax.random.wrap_key_data(leaf, impl=impl)
                  for leaf, impl in zip(leaves, impls, strict=False)]
        return jax.tree_util.tree_unflatten(tree, leaves)

    def local(batch_leaves, arg_leaves):
        # Each device maps over its own slice in vmapped chunks of ``chunk_size``. Every
        # device count runs the same chunk program on the same items in the same chunk
        # positions, which is what makes the results independent of the device count
        # (a plain vmap over the whole local slice compiles differently per slice size).
        batch = wrap(batch_leaves, batch_impls, batch_tree)
        args = wrap(arg_leaves, arg_impls, arg_tree)
        return jax.lax.map(lambda b: fn(b, *args), batch, batch_size=chunk_size)

    axis = mesh.axis_names[0]
    mapped = jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(axis), PartitionSpec()),
                           out_specs=PartitionSpec(axis), check_vma=False)

    def run(batch_leaves, arg_leaves):
        return mapped(batch_leaves, arg_leaves)

    run.__qualname__ = f"sharded_vmap[{getattr(fn, '__qualname__', type(fn).__name__)}]"
    run.__module__ = __name__
    return counted_jit(run)


def sharded_vmap(fn: Callable[..., Any], batch: Any, *args: Any, mesh: Mesh | None = None,
                 chunk_size: int = 8) -> Any:
    """``jax.vmap(lambda b: fn(b, *args))(batch)``, the batch axis split over ``mesh``.

    Args:
      fn: ``fn(item, *args) -> pytree``; ``item`` is one slice of ``batch`` (one key,
        one sweep point). Pass the same function object on every call (a module-level
        function or one kept in a variable): the compiled program is cached per
        ``fn``, so a fresh ``lambda`` each call would recompile each call.
      batch: a pytree (e.g. keys from ``jax.random.split``, or a dict of sweep
        parameters) whose leaves share a leading axis of length ``B``.
      *args: arrays passed unbatched to every call (replicated on every device).
      mesh: a one-dimensional :class:`jax.sharding.Mesh` (default :func:`device_mesh`).
      chunk_size: items vmapped together on a device (``jax.lax.map`` with this
        ``batch_size`` runs the chunks in sequence): larger is faster for small
        ``fn``, smaller holds less memory. Results are bitwise identical for any
        device count at a fixed ``chunk_size``, not across chunk sizes.

    Returns:
      ``fn``'s outputs stacked along a leading axis of length ``B``, sharded over the
      mesh. ``B`` need not divide anything: the batch is padded (copies of its first
      item) to a multiple of ``devices x chunk_size`` and the padding dropped.
    """
    mesh = device_mesh() if mesh is None else mesh
    if len(mesh.axis_names) != 1:
        raise ValueError(f"sharded_vmap needs a one-dimensional mesh, got axes {mesh.axis_names}")
    chunk_size = V.positive_int(chunk_size, "chunk_size")
    batch_leaves, batch_tree = jax.tree_util.tree_flatten(batch)
    if not batch_leaves:
        raise ValueError("sharded_vmap: batch has no array leaves")
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in batch_leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"sharded_vmap: every leaf of batch needs the same leading axis, got lengths {sizes}")
    (size,) = sizes
    if size == 0:
        raise ValueError("sharded_vmap: batch is empty (leading axis of length 0)")
    pad = (-size) % (mesh.size * chunk_size)
    if pad:
        batch_leaves = [jnp.concatenate([leaf, jnp.repeat(leaf[:1], pad, axis=0)]) for leaf in batch_leaves]
    split = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
    replicated = NamedSharding(mesh, PartitionSpec())
    placed = [_to_global(leaf, split) for leaf in batch_leaves]
    arg_leaves, arg_tree = jax.tree_util.tree_flatten(args)
    placed_args = [_to_global(leaf, replicated) for leaf in arg_leaves]
    run = _batched(fn, mesh, chunk_size, tuple(i for _, i in placed), tuple(i for _, i in placed_args),
                   batch_tree, arg_tree)
    out = run([a for a, _ in placed], [a for a, _ in placed_args])
    return jax.tree_util.tree_map(lambda o: o[:size], out) if pad else out


def monte_carlo(fn: Callable[..., Any], key: jax.Array, num_draws: int, *args: Any, mesh: Mesh | None = None) -> Any:
    """``fn(k_i, *args)`` for the ``num_draws`` keys ``jax.random.split(key, num_draws)``, sharded.

    The keys are split before sharding, so draw ``i`` is the same on any number of devices.
    """
    num_draws = V.positive_int(num_draws, "num_draws")
    if not (_is_key(key) and key.shape == ()):
        raise ValueError("key must be a single typed key from jax.random.key(seed)")
    return sharded_vmap(fn, jax.random.split(key, num_draws), *args, mesh=mesh)


def gather(tree: Any) -> Any:
    """A host-local NumPy copy of (possibly multi-host) sharded outputs."""
    if jax.process_count() == 1:
        return jax.tree_util.tree_map(np.asarray, tree)
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)
