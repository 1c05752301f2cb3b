"""The experiments' shared pieces, one module per job, re-exported here for the experiments.

* :mod:`experiments.configs`: ``Options`` (command-line options), the default model's presets, ``train_summary``;
* :mod:`experiments.evaluation`: query predictions and errors of trained models;
* :mod:`experiments.statistics`: bootstrap intervals of means and Spearman's rho;
* :mod:`experiments.theorem_check`: Theorem 3.1(a) on trained weights;
* :mod:`experiments.output`: ``Result``, the JSON/Markdown/PNG writer, ``fmt_ci``, ``pyplot``.
"""

from __future__ import annotations

from experiments.configs import Options, base_model, base_train_config, train_summary
from experiments.evaluation import _predict_jit, error_rate, predictions, prompt_errors
from experiments.output import Result, fmt_ci, pyplot, write_outputs
from experiments.statistics import N_BOOT, mean_ci, spearman, spearman_ci
from experiments.theorem_check import thm31_trained

__all__ = ["N_BOOT", "Options", "Result", "base_model", "base_train_config", "error_rate", "fmt_ci", "mean_ci",
           "predictions", "prompt_errors", "pyplot", "spearman", "spearman_ci", "thm31_trained", "train_summary",
           "write_outputs", "_predict_jit"]
