"""``weight-norm``: weight decay on W^V vs the generalisation gap across tasks (docs/statements.md#thm-3-2; seed check #3).

Models are trained on a finite pool of training tasks (``n_train_tasks``) with
decoupled weight decay λ on ``W^V`` only (``optax.adamw`` masked to ``wv``), one model
per λ. Per model: ``||W^V||_F``, ``||W^V||_op`` (the B/T factors of Theorem 3.2) and the
generalisation gap = in-context MSE on prompts with held-out (fresh) tasks minus that
on prompts with training tasks; its interval is a bootstrap of both samples.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from experiments import common as C
from experiments.data import sample_prompts
from experiments.training import get_or_train, task_pool

NAME = "weight-norm"


def run(opts: C.Options, trained=None) -> C.Result:
    lambdas = [0.0, 0.1, 1.0] if opts.quick else [0.0, 0.01, 0.1, 0.3, 1.0, 3.0]
    base = C.base_train_config(opts.quick, opts.seed, opts.task)
    n_tasks = 8 if opts.quick else 16
    root = jax.random.fold_in(jax.random.key(opts.seed), 404)
    n_prompts = 256 if opts.quick else 1024
    rows = []
    for i, lam in enumerate(lambdas):
        cfg = dataclasses.replace(base, weight_decay_wv=lam, n_train_tasks=n_tasks)
        model = get_or_train(cfg, opts.cache_dir, log=opts.log)
        wv = np.concatenate([np.asarray(model.params[k]["wv"], np.float64).reshape(-1, model.config.model.token_dim)
                             for k in sorted(model.params)])
        train_p = sample_prompts(jax.random.fold_in(root, 2 * i), cfg.task, n_prompts, n_queries=4,
                                 task_pool=task_pool(cfg))
        held_p = sample_prompts(jax.random.fold_in(root, 2 * i + 1), cfg.task, n_prompts, n_queries=4)
        e_train, e_held = C.prompt_errors(model, train_p), C.prompt_errors(model, held_p)
        tr, tr_ci = C.mean_ci(jax.random.fold_in(root, 100 + i), e_train)
        he, he_ci = C.mean_ci(jax.random.fold_in(root, 200 + i), e_held)
        bi = np.asarray(jax.random.randint(jax.random.fold_in(root, 300 + i), (2, C.N_BOOT, n_prompts), 0, n_prompts))
        gaps = e_held[bi[1]].mean(1) - e_train[bi[0]].mean(1)
        row = {"weight_decay_wv": lam, "wv_frobenius": float(np.linalg.norm(wv)),
               "wv_operator": float(np.linalg.norm(wv, 2)), "train_task_mse": tr, "train_task_mse_ci": tr_ci,
               "heldout_task_mse": he, "heldout_task_mse_ci": he_ci, "gap": he - tr,
               "gap_ci": [float(np.quantile(gaps, 0.025)), float(np.quantile(gaps, 0.975))],
               "train_seconds": model.train_seconds}
        rows.append(row)
        opts.log(f"  λ={lam:g}  ||W^V||_F={row['wv_frobenius']:.3g}  gap {C.fmt_ci(row['gap'], row['gap_ci'])}")
    rho = C.spearman([r["wv_frobenius"] for r in rows], [r["gap"] for r in rows])
    data = {"rows": rows, "n_train_tasks": n_tasks, "spearman_norm_vs_gap": rho,
            "spearman_note": f"over {len(rows)} models only: descriptive, no interval"}
    md = [f"# weight-norm ({'quick' if opts.quick else 'full'})", "",
          f"{n_tasks} training tasks; gap = held-out-task MSE − training-task MSE. Spearman(‖W^V‖_F, gap) over "
          f"{len(rows)} models: {rho:.2f} (descriptive).", "",
          "| λ (W^V) | ‖W^V‖_F | train-task MSE | held-out MSE | gap [95% CI] |", "|---|---|---|---|---|"]
    md += [f"| {r['weight_decay_wv']:g} | {r['wv_frobenius']:.3g} | {r['train_task_mse']:.3g} | "
           f"{r['heldout_task_mse']:.3g} | {C.fmt_ci(r['gap'], r['gap_ci'])} |" for r in rows]

    def fig(plt):
        f, ax = plt.subplots(figsize=(5, 4))
        x = [r["wv_frobenius"] for r in rows]
        ax.errorbar(x, [r["gap"] for r in rows], yerr=[[r["gap"] - r["gap_ci"][0] for r in rows],
                                                      [r["gap_ci"][1] - r["gap"] for r in rows]], fmt="o")
        ax.axhline(0, color="gray", ls=":")
        ax.set_xlabel("‖W^V‖_F")
        ax.set_ylabel("generalisation gap (held-out − train tasks)")
        return f

    return C.Result(NAME, data, "\n".join(md), {"gap": fig})
