"""``lr-proxy``: the learning-rate proxy η = N / (2D') and attention entropy vs prediction sensitivity
(docs/statements.md#lemma-eta).

Pure softmax attention is permutation-invariant in the demonstrations, and in a
one-layer model causal masking changes nothing for the query (the last token sees
every demonstration). Order sensitivity therefore needs **positional information**:
this experiment trains the one-layer model with 4 fixed sinusoidal positional
features appended to every token (``ModelConfig(positional_dim=4)``); Theorem 3.1(a)
holds unchanged on those augmented tokens. The base model without positions is also
measured as a control (its order sensitivity must be round-off).

Per prompt: ``log D'`` and the attention entropy at the query (head 0); order
sensitivity = std of the prediction over 8 random permutations of the
demonstrations; perturbation sensitivity = mean ``|Δ prediction| / ε`` when the
demonstration inputs get Gaussian noise of size ε = 0.05. Spearman correlations with
bootstrap CIs over prompts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

from experiments import common as C
from experiments.data import DTYPE, Prompts, sample_prompts
from experiments.models import attention_weights, make_tokens

NAME = "lr-proxy"
EPS = 0.05


def _sensitivities(trained, prompts: Prompts, key, n_perm: int = 8) -> tuple[np.ndarray, np.ndarray]:
    base = C.predictions(trained, prompts)[:, 0]
    p, n = prompts.y_demos.shape
    perm_preds = []
    for j in range(n_perm):
        perm = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(jax.random.fold_in(key, j), p))
        xd = jnp.take_along_axis(prompts.x_demos, perm[..., None], axis=1)
        yd = jnp.take_along_axis(prompts.y_demos, perm, axis=1)
        perm_preds.append(C.predictions(trained, prompts._replace(x_demos=xd, y_demos=yd))[:, 0])
    order = np.std(np.stack(perm_preds), axis=0)
    pert = []
    for j in range(4):
        noise = EPS * jax.random.normal(jax.random.fold_in(key, 100 + j), prompts.x_demos.shape, DTYPE)
        pert.append(np.abs(C.predictions(trained, prompts._replace(x_demos=prompts.x_demos + noise))[:, 0] - base) / EPS)
    return order, np.mean(pert, axis=0)


def run(opts: C.Options, trained=None) -> C.Result:
    trained = trained or C.base_model(opts, positional_dim=4)
    control = C.base_model(opts)
    cfg = trained.config
    root = jax.random.fold_in(jax.random.key(opts.seed), 303)
    n_prompts = 128 if opts.quick else 512
    prompts = sample_prompts(jax.random.fold_in(root, 0), cfg.task, n_prompts)
    tokens = np.asarray(make_tokens(cfg.model, prompts.x_demos, prompts.y_demos, prompts.x_query[:, 0]), np.float64)
    wq, wk, _ = (np.asarray(a, np.float64) for a in attention_weights(trained.params, 0, 0))
    logits = np.einsum("pnk,pk->pn", tokens @ wk.T, tokens[:, -1] @ wq.T)
    log_dp = logsumexp(logits, axis=1)
    probs = np.exp(logits - log_dp[:, None])
    entropy = -np.sum(probs * np.log(np.maximum(probs, 1e-300)), axis=1)
    log_eta = np.log(cfg.task.n_demos / 2) - log_dp
    order, pert = _sensitivities(trained, prompts, jax.random.fold_in(root, 1))
    ctrl_order, _ = _sensitivities(control, prompts, jax.random.fold_in(root, 1), n_perm=2)
    errs = C.prompt_errors(trained, prompts)
    k = lambda i: jax.random.fold_in(root, 10 + i)
    corr = {}
    for i, (a, b, label) in enumerate([(log_dp, order, "log_D_vs_order_sensitivity"),
                                       (entropy, order, "entropy_vs_order_sensitivity"),
                                       (log_dp, pert, "log_D_vs_perturbation_sensitivity"),
                                       (entropy, pert, "entropy_vs_perturbation_sensitivity"),
                                       (log_dp, errs, "log_D_vs_icl_error")]):
        rho, ci = C.spearman_ci(k(i), a, b)
        corr[label] = {"spearman": rho, "ci": ci}
        opts.log(f"  {label:40s} {C.fmt_ci(rho, ci)}")
    mse0, mse0_ci = C.mean_ci(k(20), errs)
    data = {"positional_information": "4 fixed sinusoidal features appended to tokens (no causal mask: it cannot "
                                      "change a one-layer model's query output)",
            "correlations": corr, "log_D_mean": float(log_dp.mean()), "log_D_range": [float(log_dp.min()),
                                                                                      float(log_dp.max())],
            "log_eta_mean": float(log_eta.mean()), "entropy_mean": float(entropy.mean()),
            "order_sensitivity_mean": float(order.mean()), "perturbation_sensitivity_mean": float(pert.mean()),
            "control_no_position_order_sensitivity_max": float(ctrl_order.max()),
            "icl_mse_in_distribution": mse0, "icl_mse_in_distribution_ci": mse0_ci,
            "zero_predictor_mse": float(np.mean(np.asarray(prompts.y_query) ** 2)),
            "thm31a_trained": C.thm31_trained(trained, prompts), "model": C.train_summary(trained)}
    md = [f"# lr-proxy ({'quick' if opts.quick else 'full'})", "",
          "Positional information: " + data["positional_information"] + ".",
          f"Control without positions: max order sensitivity {data['control_no_position_order_sensitivity_max']:.2g}"
          " (permutation invariance).", f"In-context MSE {C.fmt_ci(mse0, mse0_ci)}.", "",
          "| pair | Spearman [95% CI] |", "|---|---|"]
    md += [f"| {name} | {C.fmt_ci(v['spearman'], v['ci'])} |" for name, v in corr.items()]

    def fig(plt):
        f, ax = plt.subplots(1, 2, figsize=(10, 4))
        ax[0].scatter(log_dp, order, s=6)
        ax[0].set_xlabel("log D' (query)")
        ax[0].set_ylabel("order sensitivity (std over permutations)")
        ax[1].scatter(entropy, pert, s=6)
        ax[1].set_xlabel("attention entropy (nats)")
        ax[1].set_ylabel("|Δpred| / ε")
        return f

    return C.Result(NAME, data, "\n".join(md), {"sensitivity": fig})
