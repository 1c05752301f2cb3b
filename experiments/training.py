"""Training with Optax, and checkpoints (``.npz`` params + ``.json`` config, seed and history).

A checkpoint is keyed by the SHA-256 fingerprint of its :class:`TrainConfig` (which
includes the seed), so :func:`get_or_train` reuses a model trained with exactly the
same configuration from ``<out>/cache/`` and retrains otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from experiments.data import DTYPE, TaskConfig, flatten_queries, sample_prompts
from experiments.models import ModelConfig, init_params, make_tokens, predict
from verification.core.outputs import atomic_path, write_atomic


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (same config, same params).

    Attributes:
      model, task: architecture and in-context task.
      steps, batch_size, learning_rate: Adam(W) with a cosine decay and gradient clipping at 1.
      weight_decay_wv: decoupled weight decay on every ``W^V`` only (``optax.adamw`` with a mask).
      n_train_tasks: 0 = a fresh task vector per prompt; K > 0 = a fixed pool of K training tasks.
      seed: the integer behind every random draw (``jax.random.key(seed)``).
    """

    model: ModelConfig = ModelConfig()
    task: TaskConfig = TaskConfig()
    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 1e-2
    weight_decay_wv: float = 0.0
    n_train_tasks: int = 0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        return cls(model=ModelConfig(**d.pop("model")), task=TaskConfig(**d.pop("task")), **d)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


class Trained(NamedTuple):
    """A trained model: its config, params (float32 pytree), loss history ``[(step, loss)]``, seconds, whether loaded."""

    config: TrainConfig
    params: dict
    history: list
    train_seconds: float
    from_cache: bool = False


def task_pool(cfg: TrainConfig) -> jax.Array | None:
    """The finite pool of training task vectors (``None`` when tasks are fresh)."""
    if cfg.n_train_tasks <= 0:
        return None
    return jax.random.normal(jax.random.fold_in(jax.random.key(cfg.seed), 10_000_019),
                             (cfg.n_train_tasks, cfg.task.x_dim), DTYPE)


def loss_fn(params, cfg: TrainConfig, prompts) -> jax.Array:
    """Mean squared error of the query predictions (squared loss on +-1 labels for classification)."""
    xd, yd, xq, yq = flatten_queries(prompts)
    pred = predict(cfg.model, params, make_tokens(cfg.model, xd, yd, xq))
    return jnp.mean((pred - yq) ** 2)


def _optimizer(cfg: TrainConfig, params):
    schedule = optax.cosine_decay_schedule(cfg.learning_rate, cfg.steps, alpha=0.05)
    mask = traverse_util.path_aware_map(lambda path, _: path[-1] == "wv", params)
    return optax.chain(optax.clip_by_global_norm(1.0),
                       optax.adamw(schedule, weight_decay=cfg.weight_decay_wv, mask=mask))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run_chunk(cfg: TrainConfig, chunk: int, params, opt_state, pool, data_key, start):
    """``chunk`` Optax steps in one ``lax.scan``; compiled once per (config, chunk)."""
    opt = _optimizer(cfg, params)

    def step(carry, i):
        params, opt_state = carry
        prompts = sample_prompts(jax.random.fold_in(data_key, i), cfg.task, cfg.batch_size, task_pool=pool)
        loss, grads = jax.value_and_grad(loss_fn)(params, cfg, prompts)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), start + jnp.arange(chunk))
    return params, opt_state, jnp.mean(losses)


def train(cfg: TrainConfig, *, chunk: int = 100, log=None) -> Trained:
    """Trains from ``jax.random.key(cfg.seed)``; deterministic in ``cfg``.

    Args:
      chunk: steps per jitted ``lax.scan`` (the loss is logged once per chunk).
      log: optional callable receiving progress lines.
    """
    root = jax.random.key(cfg.seed)
    params = init_params(cfg.model, jax.random.fold_in(root, 0), DTYPE, cfg.task.n_demos)
    opt = _optimizer(cfg, params)
    opt_state = opt.init(params)
    pool = task_pool(cfg)
    data_key = jax.random.fold_in(root, 1)

    history = []
    t0 = time.perf_counter()
    n_chunks = -(-cfg.steps // chunk)
    for c in range(n_chunks):
        params, opt_state, loss = _run_chunk(cfg, chunk, params, opt_state, pool, data_key, c * chunk)
        history.append((int(min((c + 1) * chunk, cfg.steps)), float(loss)))
        if log is not None and (c % 5 == 4 or c == n_chunks - 1):
            log(f"  step {history[-1][0]:6d}  train loss {history[-1][1]:.4f}")
    return Trained(cfg, params, history, time.perf_counter() - t0)


def save_checkpoint(trained: Trained, stem: Path) -> tuple[Path, Path]:
    """Writes ``stem.npz`` (flattened params, keys ``a/b/c``) and ``stem.json`` (config, seed, history, time)."""
    stem = Path(stem)
    flat = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(trained.params).items()}
    # both files atomically, the .json (read first by load_checkpoint) last: a killed run leaves no half checkpoint
    with atomic_path(stem.with_suffix(".npz")) as tmp, open(tmp, "wb") as f:
        np.savez(f, **flat)
    meta = {"train_config": trained.config.to_dict(), "seed": trained.config.seed,
            "fingerprint": trained.config.fingerprint(), "history": trained.history,
            "train_seconds": trained.train_seconds, "jax_version": jax.__version__}
    write_atomic(stem.with_suffix(".json"), json.dumps(meta, indent=2))
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def load_checkpoint(stem: Path) -> Trained:
    """Reads a checkpoint written by :func:`save_checkpoint`."""
    stem = Path(stem)
    meta = json.loads(stem.with_suffix(".json").read_text())
    with np.load(stem.with_suffix(".npz")) as data:
        flat = {tuple(k.split("/")): jnp.asarray(data[k]) for k in data.files}
    return Trained(TrainConfig.from_dict(meta["train_config"]), traverse_util.unflatten_dict(flat),
                   [tuple(h) for h in meta["history"]], float(meta["train_seconds"]), True)


def get_or_train(cfg: TrainConfig, cache_dir: Path | None, *, log=None) -> Trained:
    """Loads ``cache_dir/<fingerprint>`` if its config matches ``cfg``, else trains and saves there."""
    if cache_dir is not None:
        stem = Path(cache_dir) / f"model-{cfg.fingerprint()}"
        if stem.with_suffix(".json").exists() and stem.with_suffix(".npz").exists():
            trained = load_checkpoint(stem)
            if trained.config == cfg:
                if log:
                    log(f"loaded cached model {stem.name} (trained in {trained.train_seconds:.1f} s)")
                return trained
    if log:
        log(f"training {cfg.model.num_layers}-layer/{cfg.model.num_heads}-head model, {cfg.steps} steps ...")
    trained = train(cfg, log=log)
    if cache_dir is not None:
        save_checkpoint(trained, Path(cache_dir) / f"model-{cfg.fingerprint()}")
    return trained
