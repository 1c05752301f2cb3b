"""Bootstrap statistics of the experiments.

Every interval is a percentile bootstrap (95 %, 1000 resamples by default) whose
resampling indices come from an explicit ``jax.random`` key.
"""

from __future__ import annotations

import jax
import numpy as np
from scipy import stats as sps

N_BOOT = 1000


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
