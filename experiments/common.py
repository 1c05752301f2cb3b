"""Shared pieces of the experiments: presets, evaluation, statistics, Theorem 3.1(a) on trained weights, output.

Statistics: every interval is a percentile bootstrap (95 %, 1000 resamples by default)
whose resampling indices come from an explicit ``jax.random`` key.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as sps

from experiments.data import Prompts, TaskConfig, flatten_queries
from experiments.training import TrainConfig, Trained, get_or_train
from iclkd_jax.attention import kd_decomposition
from iclkd_jax.models import ModelConfig, attention_weights, make_tokens, predict
from verification.outputs import atomic_path, jsonable, write_atomic

N_BOOT = 1000


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


# -- evaluation -----------------------------------------------------------------------------
_predict_jit = jax.jit(predict, static_argnums=0)


def predictions(trained: Trained, prompts: Prompts, batch: int = 1024) -> np.ndarray:
    """Query predictions ``(P, Q)`` of a trained model.

    Rows are padded to a multiple of ``batch`` so that one compiled shape serves every call.
    """
    cfg = trained.config.model
    xd, yd, xq, _ = flatten_queries(prompts)
    total = xd.shape[0]
    pad = -total % batch
    if pad:
        xd, yd, xq = (jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)]) for a in (xd, yd, xq))
    out = [np.asarray(_predict_jit(cfg, trained.params, make_tokens(cfg, xd[i:i + batch], yd[i:i + batch],
                                                                     xq[i:i + batch])))
           for i in range(0, xd.shape[0], batch)]
    return np.concatenate(out)[:total].reshape(prompts.y_query.shape)


def prompt_errors(trained: Trained, prompts: Prompts) -> np.ndarray:
    """Per-prompt in-context squared error, averaged over the prompt's queries, ``(P,)``."""
    return np.mean((predictions(trained, prompts) - np.asarray(prompts.y_query)) ** 2, axis=1)


def error_rate(trained: Trained, prompts: Prompts) -> float:
    """Classification error rate of ``sign(prediction)``."""
    return float(np.mean(np.sign(predictions(trained, prompts)) != np.asarray(prompts.y_query)))


# -- statistics -----------------------------------------------------------------------------
def _boot_indices(key: jax.Array, n: int, n_boot: int) -> np.ndarray:
    return np.asarray(jax.random.randint(key, (n_boot, n), 0, n))


def mean_ci(key: jax.Array, values, n_boot: int = N_BOOT, level: float = 0.95) -> tuple[float, list[float]]:
    """Mean and its percentile-bootstrap interval."""
    v = np.asarray(values, np.float64)
    boots = v[_boot_indices(key, v.size, n_boot)].mean(axis=1)
    a = (1 - level) / 2
    return float(v.mean()), [float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))]


def spearman(x, y) -> float:
    return float(sps.spearmanr(np.asarray(x), np.asarray(y)).statistic)


def spearman_ci(key: jax.Array, x, y, n_boot: int = N_BOOT, level: float = 0.95) -> tuple[float, list[float]]:
    """Spearman's rho and its percentile-bootstrap interval (pairs resampled)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    idx = _boot_indices(key, x.size, n_boot)
    rx = sps.rankdata(x[idx], axis=1)
    ry = sps.rankdata(y[idx], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    rho = np.where(den > 0, (rx * ry).sum(1) / np.where(den > 0, den, 1), 0.0)
    a = (1 - level) / 2
    return spearman(x, y), [float(np.quantile(rho, a)), float(np.quantile(rho, 1 - a))]


# -- Theorem 3.1(a) on trained weights ---------------------------------------------------------
def thm31_trained(trained: Trained, prompts: Prompts, max_prompts: int = 8) -> dict[str, Any]:
    """Theorem 3.1(a) on the trained weights of a one-layer model (THEOREMS.md).

    For each head, ``iclkd_jax.kd_decomposition`` with ``X_D`` = the demonstration
    tokens, ``X_Q`` = the query token (``M = 1``) gives ``(W_0 + ΔW) phi(q)``; summed over
    heads it must equal the Flax model's prediction. Reported: the largest relative
    error ``|model - KD| / max(|model|, mean |y|)`` in float32 (the model's own
    precision) and, when x64 is enabled, with weights and tokens cast to float64
    against a float64 forward pass.
    """
    cfg = trained.config.model
    if cfg.residual:
        return {"applicable": False, "reason": "multi-layer/residual models: see the multi-layer experiment"}
    xd, yd, xq, yq = (np.asarray(a)[:max_prompts * prompts.y_query.shape[1]] for a in flatten_queries(prompts))
    tokens = make_tokens(cfg, jnp.asarray(xd), jnp.asarray(yd), jnp.asarray(xq))
    out: dict[str, Any] = {"applicable": True, "n_prompts": int(tokens.shape[0])}
    scale = max(float(np.mean(np.abs(yq))), 1e-12)
    dtypes = [jnp.float32] + ([jnp.float64] if jax.config.jax_enable_x64 else [])
    for dtype in dtypes:
        params = jax.tree.map(lambda a: jnp.asarray(a, dtype), trained.params)
        toks = jnp.asarray(tokens, dtype)
        model = np.asarray(predict(cfg, params, toks), np.float64)
        kd = np.zeros_like(model)
        log_eta, entropy = [], []
        for h in range(cfg.num_heads):
            w = attention_weights(params, 0, h)
            for i in range(toks.shape[0]):
                dec = kd_decomposition(w, toks[i, :-1], toks[i, -1:], toks[i, -1:])
                kd[i] += float(dec.output[0, 0])
                if h == 0:
                    log_eta.append(float(dec.log_eta[0]))
                    entropy.append(float(dec.attention_entropy[0]))
        rel = np.abs(model - kd) / np.maximum(np.abs(model), scale)
        name = jnp.dtype(dtype).name
        out[f"max_rel_error_{name}"] = float(rel.max())
        out["tolerance_float32"] = 1e-5
        out["tolerance_float64"] = 1e-12
        out["log_eta_mean"] = float(np.mean(log_eta))
        out["attention_entropy_mean"] = float(np.mean(entropy))
    out["holds"] = bool(out["max_rel_error_float32"] <= 1e-5 and out.get("max_rel_error_float64", 0.0) <= 1e-12)
    return out


# -- output ------------------------------------------------------------------------------------
def pyplot():
    """``matplotlib.pyplot`` with the Agg backend, or a clear error (plots are the optional extra ``plots``)."""
    try:
        import matplotlib
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise RuntimeError("plots need matplotlib: pip install 'iclkd-jax[plots]' (or pass --no-plots)") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


@dataclasses.dataclass
class Result:
    """What an experiment produces: a JSON-able dict, a Markdown summary, figure builders ``name -> f(plt) -> fig``."""

    name: str
    data: dict[str, Any]
    markdown: str
    figures: dict[str, Callable[[Any], Any]] = dataclasses.field(default_factory=dict)


def write_outputs(result: Result, opts: Options, started: float) -> dict[str, Any]:
    """Writes ``<out>/<name>.json``, ``<out>/<name>.md``, ``<out>/<name>-*.png`` and the optional ``--json`` copy."""
    out = Path(opts.out)
    files = []
    if opts.plots and result.figures:
        plt = pyplot()
        for fig_name, build in result.figures.items():
            fig = build(plt)
            path = out / f"{result.name}-{fig_name}.png"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
            plt.close(fig)
            files.append(path.name)
    data = dict(result.data)
    data.update(experiment=result.name, quick=opts.quick, seed=opts.seed, task=opts.task, plots=files,
                wall_seconds=time.perf_counter() - started, jax_version=jax.__version__)
    data = jsonable(data)
    text = json.dumps(data, indent=2, allow_nan=False)
    write_atomic(out / f"{result.name}.json", text)
    md = result.markdown + "\n" + "".join(f"\n![{f}]({f})\n" for f in files)
    md += f"\n_wall time {data['wall_seconds']:.1f} s; quick={opts.quick}; seed={opts.seed}_\n"
    write_atomic(out / f"{result.name}.md", md)
    if opts.json_path is not None:
        write_atomic(opts.json_path, text)
    return data


def fmt_ci(value: float, ci) -> str:
    return f"{value:.4g} [{ci[0]:.4g}, {ci[1]:.4g}]"


def train_summary(trained: Trained) -> dict[str, Any]:
    return {"train_config": trained.config.to_dict(), "fingerprint": trained.config.fingerprint(),
            "train_seconds": trained.train_seconds, "from_cache": trained.from_cache,
            "final_train_loss": trained.history[-1][1] if trained.history else None}
