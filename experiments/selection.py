"""``selection``: choosing N demonstrations from a mixed-domain pool (docs/statements.md#thm-4-2; seed "First 3 experiments" #1).

Per prompt (task ``w``): a pool of ``4N`` labelled candidates, ``N`` from each of four
domains: the target D and three copies of D translated by 0.8 in random (seeded)
directions. The query distribution is represented by ``R`` unlabelled draws from D (the
queries themselves are fresh draws from D). Strategies, each picking ``N`` demonstrations:

* ``mmd``: greedy minimisation of the biased MMD² between the chosen set and the
  unlabelled query sample, Gaussian RBF kernel on ``x`` (median bandwidth);
* ``mmd-product``: the same with Theorem 4.1's kernel ``(z.z') exp((W^K z).(W^K z'))``
  of the trained ``W^K`` on label-masked tokens ``[x, 0, 1]`` (the bound's own kernel);
* ``random``: uniform without replacement from the pool;
* ``knn``: per query, the N pool points nearest to that query in ``x`` (retrieval);
* ``oracle-domain``: N random points from the target-domain part of the pool (a reference
  that knows the domain labels).

Reported: per strategy the in-context MSE with a bootstrap CI over prompts, the paired
difference to ``random`` with its CI, and the MMD (RBF) of the chosen sets.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common as C
from experiments.data import DTYPE, Prompts, label, sample_prompts
from experiments.models import attention_weights
from iclkd_jax.distributions import shift_family
from iclkd_jax.kernels import median_bandwidth

NAME = "selection"


def greedy_mmd(k_pool: np.ndarray, k_cross_mean: np.ndarray, n: int) -> np.ndarray:
    """Greedy MMD minimisation, vectorised over prompts.

    Args:
      k_pool: ``(P, M, M)`` Gram matrix of the pool.
      k_cross_mean: ``(P, M)`` mean kernel value of each candidate to the reference sample.
      n: how many to choose (without replacement).

    Returns:
      ``(P, n)`` indices into the pool, in the order chosen.
    """
    p, m, _ = k_pool.shape
    chosen = np.zeros((p, n), int)
    taken = np.zeros((p, m), bool)
    row_sum = np.zeros((p, m))        # sum_{j in S} K[c, j]
    total = np.zeros(p)               # sum_{i, j in S} K
    cross = np.zeros(p)               # sum_{j in S} mean_r K[j, r]
    diag = np.einsum("pii->pi", k_pool)
    for s in range(n):
        size = s + 1
        value = (total[:, None] + 2 * row_sum + diag) / size**2 - 2 * (cross[:, None] + k_cross_mean) / size
        value = np.where(taken, np.inf, value)
        c = np.argmin(value, axis=1)
        chosen[:, s] = c
        taken[np.arange(p), c] = True
        total += 2 * row_sum[np.arange(p), c] + diag[np.arange(p), c]
        cross += k_cross_mean[np.arange(p), c]
        row_sum += k_pool[np.arange(p), :, c]
    return chosen


def _rbf(a, b, bw):
    d2 = np.sum((a[:, :, None, :] - b[:, None, :, :]) ** 2, axis=-1)
    return np.exp(-d2 / (2 * bw**2))


def _product(a, b, wk):
    lin = np.einsum("pnd,pmd->pnm", a, b)
    ex = np.einsum("pnk,pmk->pnm", a @ wk.T, b @ wk.T)
    return lin * np.exp(ex - ex.max(axis=(1, 2), keepdims=True))   # a per-prompt positive scale: argmin unchanged


def _mmd2_rbf(a, b, bw):
    return _rbf(a, a, bw).mean((1, 2)) + _rbf(b, b, bw).mean((1, 2)) - 2 * _rbf(a, b, bw).mean((1, 2))


def run(opts: C.Options, trained=None) -> C.Result:
    trained = trained or C.base_model(opts)
    cfg = trained.config
    task = cfg.task
    n, d = task.n_demos, task.x_dim
    n_prompts, n_queries, n_ref = (96, 4, 32) if opts.quick else (384, 8, 64)
    root = jax.random.fold_in(jax.random.key(opts.seed), 202)
    target = task.target()
    dirs = np.asarray(jax.random.normal(jax.random.fold_in(root, 0), (3, d), DTYPE), np.float64)
    domains = [target] + [shift_family(target, u, 0.8) for u in dirs]
    keys = jax.random.split(jax.random.fold_in(root, 1), 8)
    base = sample_prompts(keys[0], task, n_prompts, n_queries=n_queries)          # w, queries from D
    w = base.w
    pool_x = jnp.concatenate([jax.vmap(lambda k, dist=dist: dist.sample(k, n, DTYPE))(
        jax.random.split(jax.random.fold_in(keys[1], i), n_prompts)) for i, dist in enumerate(domains)], axis=1)
    pool_y = label(task, w, pool_x, keys[2])
    ref_x = jax.vmap(lambda k: target.sample(k, n_ref, DTYPE))(jax.random.split(keys[3], n_prompts))
    px, py = np.asarray(pool_x, np.float64), np.asarray(pool_y, np.float64)
    rx = np.asarray(ref_x, np.float64)
    bw = median_bandwidth(np.concatenate([px[0], rx[0]]))
    m = px.shape[1]

    choices: dict[str, np.ndarray] = {}
    choices["mmd"] = greedy_mmd(_rbf(px, px, bw), _rbf(px, rx, bw).mean(-1), n)
    wk = np.asarray(attention_weights(trained.params, 0, 0).wk, np.float64)
    masked = lambda x: np.concatenate([x, np.zeros(x.shape[:-1] + (1,)), np.ones(x.shape[:-1] + (1,)),
                                       np.zeros(x.shape[:-1] + (cfg.model.positional_dim,))], axis=-1)
    both = _product(masked(np.concatenate([px, rx], 1)), masked(np.concatenate([px, rx], 1)), wk)
    choices["mmd-product"] = greedy_mmd(both[:, :m, :m], both[:, :m, m:].mean(-1), n)
    choices["random"] = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, m)[:n])(
        jax.random.split(keys[4], n_prompts)))
    choices["oracle-domain"] = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, n))(
        jax.random.split(keys[5], n_prompts)))

    xq = np.asarray(base.x_query, np.float64)
    errors, set_mmd = {}, {}
    take = lambda arr, idx: np.take_along_axis(arr, idx[..., None] if arr.ndim == 3 else idx, axis=1)
    for name, idx in choices.items():
        prompts = Prompts(jnp.asarray(take(px, idx), DTYPE), jnp.asarray(take(py, idx), DTYPE), base.x_query,
                          base.y_query, w)
        errors[name] = C.prompt_errors(trained, prompts)
        set_mmd[name] = float(np.mean(np.sqrt(np.maximum(_mmd2_rbf(take(px, idx), rx, bw), 0))))
    # kNN: per query, its N nearest pool points
    dist2 = np.sum((xq[:, :, None, :] - px[:, None, :, :]) ** 2, axis=-1)          # (P, Q, M)
    knn = np.argsort(dist2, axis=-1)[..., :n]                                         # (P, Q, N)
    knn_err = np.zeros((n_prompts, n_queries))
    knn_mmd = []
    for j in range(n_queries):
        prompts = Prompts(jnp.asarray(take(px, knn[:, j]), DTYPE), jnp.asarray(take(py, knn[:, j]), DTYPE),
                          base.x_query[:, j:j + 1], base.y_query[:, j:j + 1], w)
        knn_err[:, j] = C.prompt_errors(trained, prompts)
        knn_mmd.append(np.mean(np.sqrt(np.maximum(_mmd2_rbf(take(px, knn[:, j]), rx, bw), 0))))
    errors["knn"] = knn_err.mean(axis=1)
    set_mmd["knn"] = float(np.mean(knn_mmd))

    strategies = []
    for i, name in enumerate(["mmd", "mmd-product", "random", "knn", "oracle-domain"]):
        mse, ci = C.mean_ci(jax.random.fold_in(root, 100 + i), errors[name])
        diff, diff_ci = C.mean_ci(jax.random.fold_in(root, 200 + i), errors[name] - errors["random"])
        frac_target = None
        if name in choices:
            frac_target = float(np.mean(choices[name] < n))
        else:
            frac_target = float(np.mean(knn < n))
        strategies.append({"name": name, "mse": mse, "ci": ci, "minus_random": diff, "minus_random_ci": diff_ci,
                           "mmd_rbf_to_queries": set_mmd[name], "fraction_from_target_domain": frac_target})
        opts.log(f"  {name:14s} mse {C.fmt_ci(mse, ci)}  minus random {C.fmt_ci(diff, diff_ci)}  "
                 f"MMD {set_mmd[name]:.3g}  target-domain fraction {frac_target:.2f}")
    rho, rho_ci = C.spearman_ci(jax.random.fold_in(root, 9), [s["mmd_rbf_to_queries"] for s in strategies],
                                [s["mse"] for s in strategies], n_boot=200)
    in_dist = sample_prompts(jax.random.fold_in(root, 2), task, n_prompts, n_queries=n_queries)
    mse0, mse0_ci = C.mean_ci(jax.random.fold_in(root, 3), C.prompt_errors(trained, in_dist))
    zero = float(np.mean(np.asarray(in_dist.y_query) ** 2))
    data = {"strategies": strategies, "n_demos": n, "pool_size": m, "n_reference": n_ref, "n_prompts": n_prompts,
            "rbf_bandwidth": bw, "icl_mse_in_distribution": mse0, "icl_mse_in_distribution_ci": mse0_ci,
            "zero_predictor_mse": zero, "learned": bool(mse0 < 0.5 * zero),
            "spearman_strategy_mmd_vs_mse": rho,
            "thm31a_trained": C.thm31_trained(trained, in_dist), "model": C.train_summary(trained)}
    best = min(strategies, key=lambda s: s["mse"])
    md = [f"# selection ({'quick' if opts.quick else 'full'})", "",
          f"Pool of {m} candidates from 4 domains (1 target), choose N = {n}; {n_prompts} prompts x {n_queries} "
          f"queries. Lowest error: **{best['name']}**. In-distribution MSE {C.fmt_ci(mse0, mse0_ci)}, "
          f"zero predictor {zero:.3g}.", "",
          "| strategy | ICL MSE [95% CI] | minus random [95% CI] | MMD_rbf to queries | from target domain |",
          "|---|---|---|---|---|"]
    md += [f"| {s['name']} | {C.fmt_ci(s['mse'], s['ci'])} | {C.fmt_ci(s['minus_random'], s['minus_random_ci'])} | "
           f"{s['mmd_rbf_to_queries']:.3g} | {s['fraction_from_target_domain']:.2f} |" for s in strategies]

    def fig(plt):
        f, ax = plt.subplots(figsize=(6, 4))
        names = [s["name"] for s in strategies]
        y = [s["mse"] for s in strategies]
        err = [[s["mse"] - s["ci"][0] for s in strategies], [s["ci"][1] - s["mse"] for s in strategies]]
        ax.bar(names, y, yerr=err, capsize=4, color="tab:blue")
        ax.set_ylabel("in-context MSE (95% bootstrap CI)")
        ax.set_title("demonstration selection")
        return f

    return C.Result(NAME, data, "\n".join(md), {"strategies": fig})
