"""Experiment configuration: the shared command-line options and the default trained model (presets)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from experiments.data import TaskConfig
from experiments.models import ModelConfig
from experiments.training import TrainConfig, Trained, get_or_train


@dataclasses.dataclass
class Options:
    """Command-line options shared by every experiment."""

    quick: bool = False
    seed: int = 0
    out: Path = Path("iclkd-out/experiments")
    json_path: Path | None = None
    plots: bool = True
    task: str = "regression"
    verbose: bool = True

    def log(self, msg: str) -> None:
        if self.verbose:
            print(msg, file=sys.stderr, flush=True)

    @property
    def cache_dir(self) -> Path:
        return Path(self.out) / "cache"


def base_train_config(quick: bool, seed: int = 0, task: str = "regression", **model_overrides) -> TrainConfig:
    """The default one-layer, one-head model. Quick: d = 2, N = 16, 400 steps; full: d = 3, N = 24, 3000 steps."""
    if quick:
        model = ModelConfig(x_dim=2, key_dim=4, **model_overrides)
        return TrainConfig(model=model, task=TaskConfig(x_dim=2, n_demos=16, task=task), steps=400,
                           batch_size=32, learning_rate=3e-2, seed=seed)
    model = ModelConfig(x_dim=3, key_dim=8, **model_overrides)
    return TrainConfig(model=model, task=TaskConfig(x_dim=3, n_demos=24, task=task), steps=3000,
                       batch_size=64, learning_rate=3e-2, seed=seed)


def base_model(opts: Options, **model_overrides) -> Trained:
    return get_or_train(base_train_config(opts.quick, opts.seed, opts.task, **model_overrides), opts.cache_dir,
                        log=opts.log)


def train_summary(trained: Trained) -> dict[str, Any]:
    return {"train_config": trained.config.to_dict(), "fingerprint": trained.config.fingerprint(),
            "train_seconds": trained.train_seconds, "from_cache": trained.from_cache,
            "final_train_loss": trained.history[-1][1] if trained.history else None}
