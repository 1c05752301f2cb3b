"""``mmd-shift``: in-context error under a shifted demonstration distribution (docs/statements.md#thm-4-1, Theorems 4.1, 4.2).

Demonstrations come from ``Q_t`` = D translated by ``t u`` (``iclkd_jax.distributions.shift_family``,
``u`` a random unit direction from the seed), queries from the target D. For every
prompt a twin prompt with the same task ``w`` and the same queries but demonstrations
from D is drawn, so Theorem 4.2 can be evaluated on the empirical measures
``Q̂`` (shifted demos) and ``D̂`` (twin demos), where it holds deterministically:

    |W̄_η(Q̂) phi(q) − W̄_η(D̂) phi(q)| ≤ 2η ||W^V||_op MMD_k(D̂, Q̂) exp(||q||²/2),

with ``k(z, z') = (z.z') exp((W^K z).(W^K z'))`` on tokens (``iclkd_jax.product_kernel``
of the trained ``W^K``), ``q = W^Q z'`` the trained query map, and η = N / (2D') the
**shifted** prompt's own step, so ``W̄_η(Q̂) phi(q)`` is exactly the demonstrations' part of
the attention output (Theorem 3.1(a)). Adding the (common) query-token part ``ΔW phi(q)``
gives a rigorous per-query ceiling on the attention's error:
``|Attn_Q(x') − y| ≤ |W̄_η(D̂) phi(q) + ΔW phi(q) − y| + bound``, overlaid on the error curve.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

from experiments import common as C
from experiments.data import DTYPE, flatten_queries, sample_prompts
from experiments.models import attention_weights, make_tokens
from iclkd_jax.distributions import shift_family
from iclkd_jax.kernels import median_bandwidth, product_kernel, rbf_kernel
from iclkd_jax.mmd import mmd

NAME = "mmd-shift"


def _mmd_product_batch(wk: np.ndarray, za: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """Biased MMD_k per prompt for the product kernel, ``za, zb (P, N, d)`` -> ``(P,)`` (float64, max-shifted)."""
    ka, kb = za @ wk.T, zb @ wk.T

    def block(x, kx, y, ky):
        lin = np.einsum("pnd,pmd->pnm", x, y)
        ex = np.einsum("pnk,pmk->pnm", kx, ky)
        return lin, ex

    blocks = [block(za, ka, za, ka), block(zb, kb, zb, kb), block(za, ka, zb, kb)]
    shift = max(b[1].max() for b in blocks)
    s = [np.mean(lin * np.exp(ex - shift), axis=(1, 2)) for lin, ex in blocks]
    return np.sqrt(np.maximum(s[0] + s[1] - 2 * s[2], 0.0)) * np.exp(shift / 2)


def theorem42(trained, tokens_q: np.ndarray, tokens_d: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query Theorem 4.2 quantities (one-layer model; heads summed), float64.

    Args:
      tokens_q: ``(B, N + 1, d)`` shifted prompts (query last); ``tokens_d``: twins with D demonstrations.
      y: ``(B,)`` targets.
    """
    cfg = trained.config.model
    n = tokens_q.shape[1] - 1
    attn = np.zeros(len(y))
    student_q = np.zeros(len(y))
    student_d = np.zeros(len(y))
    query_part = np.zeros(len(y))
    bound = np.zeros(len(y))
    mmd_head0 = None
    log_eta = None
    for h in range(cfg.num_heads):
        w = attention_weights(trained.params, 0, h)
        wq, wk, wv = (np.asarray(a, np.float64) for a in w)
        q = tokens_q[:, -1] @ wq.T                                     # (B, d_k)
        lq = np.einsum("bnk,bk->bn", tokens_q @ wk.T, q)               # logits of shifted demos + query
        ld = np.einsum("bnk,bk->bn", tokens_d[:, :-1] @ wk.T, q)
        log_dp = logsumexp(lq, axis=1)                                 # D' of the shifted prompt (incl. query)
        vq = (tokens_q @ wv.T)[..., 0]
        vd = (tokens_d[:, :-1] @ wv.T)[..., 0]
        sq = np.sum(vq[:, :-1] * np.exp(lq[:, :-1] - log_dp[:, None]), axis=1)
        sd = np.sum(vd * np.exp(ld - log_dp[:, None]), axis=1)
        qp = vq[:, -1] * np.exp(lq[:, -1] - log_dp)
        m = _mmd_product_batch(wk, tokens_d[:, :-1], tokens_q[:, :-1])
        log_b = (np.log(n) - log_dp + np.log(np.linalg.norm(wv, 2)) + np.log(np.maximum(m, 1e-300))
                 + 0.5 * np.sum(q * q, axis=1))
        student_q += sq
        student_d += sd
        query_part += qp
        attn += sq + qp
        bound += np.exp(log_b)
        if h == 0:
            mmd_head0, log_eta = m, np.log(n / 2) - log_dp
    ref_err = np.abs(student_d + query_part - y)
    return {"attention": attn, "student_change": np.abs(student_q - student_d), "bound": bound,
            "ceiling_sq_error": (ref_err + bound) ** 2, "mmd_k": mmd_head0, "log_eta": log_eta}


def run(opts: C.Options, trained=None) -> C.Result:
    trained = trained or C.base_model(opts)
    cfg = trained.config
    if cfg.model.residual:
        raise ValueError("mmd-shift needs a one-layer (non-residual) model")
    root = jax.random.fold_in(jax.random.key(opts.seed), 101)
    ts = np.linspace(0.0, 1.2, 6) if opts.quick else np.linspace(0.0, 2.0, 11)
    n_prompts, n_queries = (64, 4) if opts.quick else (256, 8)
    target = cfg.task.target()
    direction = np.asarray(jax.random.normal(jax.random.fold_in(root, 0), (cfg.task.x_dim,), DTYPE), np.float64)
    ref = sample_prompts(jax.random.fold_in(root, 1), cfg.task, 128)
    ref_x = np.asarray(ref.x_demos).reshape(-1, cfg.task.x_dim)
    ref_tokens = np.asarray(make_tokens(cfg.model, ref.x_demos, ref.y_demos, ref.x_query[:, 0])[:, :-1],
                            np.float64).reshape(-1, cfg.model.token_dim)
    ref_x = ref_x.astype(np.float64)
    bandwidth = median_bandwidth(ref_x)
    wk0 = np.asarray(attention_weights(trained.params, 0, 0).wk, np.float64)
    rows, all_mmd, all_err = [], [], []
    for i, t in enumerate(ts):
        q_dist = shift_family(target, direction, float(t))
        key = jax.random.fold_in(root, 1000 + i)
        shifted = sample_prompts(key, cfg.task, n_prompts, demo_dist=q_dist, n_queries=n_queries)
        twin = sample_prompts(key, cfg.task, n_prompts, n_queries=n_queries)   # same w and queries, demos from D
        errs = C.prompt_errors(trained, shifted)
        mse, ci = C.mean_ci(jax.random.fold_in(key, 7), errs)
        # Theorem 4.2 per query
        xq_d, yq_d, xq, yq = flatten_queries(shifted)
        xt_d, yt_d, _, _ = flatten_queries(twin)
        tq = np.asarray(make_tokens(cfg.model, xq_d, yq_d, xq), np.float64)
        td = np.asarray(make_tokens(cfg.model, xt_d, yt_d, xq), np.float64)
        th = theorem42(trained, tq, td, np.asarray(yq, np.float64))
        model_pred = C.predictions(trained, shifted).reshape(-1)
        consistency = float(np.max(np.abs(th["attention"] - model_pred)))
        violations = int(np.sum(th["student_change"] > th["bound"] * (1 + 1e-9) + 1e-12))
        prompt_mmd = th["mmd_k"].reshape(n_prompts, n_queries)[:, 0]
        all_mmd.append(prompt_mmd)
        all_err.append(errs)
        # population-level MMDs (pooled tokens of all prompts) with the library estimator
        sx = np.asarray(shifted.x_demos, np.float64).reshape(-1, cfg.task.x_dim)[:1024]
        stok = tq[::n_queries, :-1].reshape(-1, cfg.model.token_dim)[:1024]
        mmd_k = float(mmd(jnp.asarray(ref_tokens[:1024]), jnp.asarray(stok), product_kernel(jnp.asarray(wk0))))
        mmd_rbf = float(mmd(jnp.asarray(ref_x[:1024]), jnp.asarray(sx), rbf_kernel(bandwidth=bandwidth)))
        row = {"t": float(t), "mmd_k": mmd_k, "mmd_rbf": mmd_rbf, "icl_mse": mse, "icl_mse_ci": ci,
               "thm42_ceiling_mse": float(np.mean(th["ceiling_sq_error"])),
               "mean_bound": float(np.mean(th["bound"])),
               "mean_student_change": float(np.mean(th["student_change"])),
               "max_bound_over_change": float(np.max(th["bound"] / np.maximum(th["student_change"], 1e-300))),
               "median_bound_over_change": float(np.median(th["bound"] / np.maximum(th["student_change"], 1e-300))),
               "thm42_violations": violations, "n_queries_checked": int(len(yq)),
               "max_abs_kd_vs_model": consistency, "log_eta_mean": float(np.mean(th["log_eta"])),
               "mean_prompt_mmd_k": float(np.mean(prompt_mmd))}
        if cfg.task.task == "classification":
            row["error_rate"] = C.error_rate(trained, shifted)
        rows.append(row)
        opts.log(f"  t={t:.2f}  MMD_k={mmd_k:.3g}  mse={C.fmt_ci(mse, ci)}  ceiling={row['thm42_ceiling_mse']:.3g}"
                 f"  violations={violations}")
    all_mmd, all_err = np.concatenate(all_mmd), np.concatenate(all_err)
    rho, rho_ci = C.spearman_ci(jax.random.fold_in(root, 9), all_mmd, all_err)
    rho_t = C.spearman([r["mmd_k"] for r in rows], [r["icl_mse"] for r in rows])
    rho_rbf = C.spearman([r["mmd_rbf"] for r in rows], [r["icl_mse"] for r in rows])
    in_dist = sample_prompts(jax.random.fold_in(root, 2), cfg.task, 4 * n_prompts, n_queries=n_queries)
    mse0, mse0_ci = C.mean_ci(jax.random.fold_in(root, 3), C.prompt_errors(trained, in_dist))
    zero, zero_ci = C.mean_ci(jax.random.fold_in(root, 4), np.mean(np.asarray(in_dist.y_query) ** 2, axis=1))
    thm31 = C.thm31_trained(trained, in_dist)
    data = {"icl_mse_in_distribution": mse0, "icl_mse_in_distribution_ci": mse0_ci,
            "zero_predictor_mse": zero, "zero_predictor_mse_ci": zero_ci,
            "learned": bool(mse0 < 0.5 * zero),
            "spearman": rho, "spearman_ci": rho_ci,
            "spearman_unit": "per prompt: MMD_k(D̂, Q̂) of its demonstrations vs its in-context squared error, pooled over t",
            "spearman_t_level": rho_t, "spearman_t_level_rbf": rho_rbf,
            "thm42_total_violations": int(sum(r["thm42_violations"] for r in rows)),
            "shift_direction": direction.tolist(), "rbf_bandwidth": bandwidth,
            "rows": rows, "thm31a_trained": thm31, "model": C.train_summary(trained)}
    md = [f"# mmd-shift ({'quick' if opts.quick else 'full'})", "",
          f"In-distribution in-context MSE {C.fmt_ci(mse0, mse0_ci)} vs zero predictor {C.fmt_ci(zero, zero_ci)}.",
          f"Spearman (per prompt, MMD_k vs error, pooled over t): {C.fmt_ci(rho, rho_ci)}; "
          f"t-level (MMD_k vs mean MSE): {rho_t:.3f}.",
          f"Theorem 4.2 on empirical measures: {data['thm42_total_violations']} violations in "
          f"{sum(r['n_queries_checked'] for r in rows)} queries. Theorem 3.1(a) on trained weights: "
          f"max rel. error float32 {thm31.get('max_rel_error_float32', float('nan')):.2g}.", "",
          "| t | MMD_k | MMD_rbf | ICL MSE [95% CI] | Thm 4.2 ceiling | median bound/observed |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['t']:.2f} | {r['mmd_k']:.3g} | {r['mmd_rbf']:.3g} | {C.fmt_ci(r['icl_mse'], r['icl_mse_ci'])} | "
           f"{r['thm42_ceiling_mse']:.3g} | {r['median_bound_over_change']:.3g} |" for r in rows]

    def fig_error(plt):
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        x = [r["mmd_k"] for r in rows]
        y = [r["icl_mse"] for r in rows]
        lo = [r["icl_mse"] - r["icl_mse_ci"][0] for r in rows]
        hi = [r["icl_mse_ci"][1] - r["icl_mse"] for r in rows]
        ax[0].errorbar(x, y, yerr=[lo, hi], fmt="o-", label="in-context MSE (95% CI)")
        ax[0].plot(x, [r["thm42_ceiling_mse"] for r in rows], "r--", label="Thm 4.2 ceiling (trained weights)")
        ax[0].axhline(zero, color="gray", ls=":", label="zero predictor")
        ax[0].set_yscale("log")
        ax[0].set_xlabel("MMD_k(D, Q_t)  (product kernel, trained W^K)")
        ax[0].set_ylabel("MSE")
        ax[0].legend(fontsize=8)
        ax[1].plot(x, [r["mean_student_change"] for r in rows], "o-", label="observed |ΔW φ(q)|")
        ax[1].plot(x, [r["mean_bound"] for r in rows], "r--", label="Thm 4.2 bound")
        ax[1].set_yscale("log")
        ax[1].set_xlabel("MMD_k(D, Q_t)")
        ax[1].legend(fontsize=8)
        fig.suptitle(f"mmd-shift: Spearman {rho:.2f} [{rho_ci[0]:.2f}, {rho_ci[1]:.2f}]")
        return fig

    return C.Result(NAME, data, "\n".join(md), {"error-vs-mmd": fig_error})
