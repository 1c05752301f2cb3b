"""``multi-layer``: are a k-layer model's predictions k KD steps? (the paper's open question; docs/statements.md#thm-3-1).

A k-layer residual model (``Z^{l+1} = Z^l + sum_h Attn_{l,h}(Z^l)``) is trained on the same
task. Per layer l, two comparisons for the query token:

1. **exact**: Theorem 3.1(a) applied to the layer's own inputs (``X_D`` = the
   layer-l demonstration rows, ``X_Q`` = the layer-l query row) reproduces the layer's
   update of the query: one KD step whose *teacher and distillation set are the
   layer-l representations* (max relative error reported);
2. **frozen distillation set**: k KD steps where every step distils from the
   *input* demonstrations ``Z^0`` (the teachers ``W^V_l`` change, the distillation set
   does not): ``z̃^{l+1} = z̃^l + sum_h (W_0 + ΔW)_{l,h} phi(W^Q z̃^l)`` with ``W_0`` from ``Z^0``.
   Reported per layer: ``||z̃^l − z^l|| / ||z^l − z^0||`` at the query, and at the end
   the R² of the k-step predictions against the model's and their in-context MSE.

The gap in (2) measures how much of the model's computation is *not* "k KD steps on
the prompt": the demonstrations' own representations move between layers.
"""

from __future__ import annotations

import jax
import numpy as np
from scipy.special import logsumexp

from experiments import common as C
from experiments.data import flatten_queries, sample_prompts
from experiments.models import ModelConfig, attention_weights, make_tokens, residual_states
from experiments.training import get_or_train
from iclkd_jax.attention import kd_decomposition

NAME = "multi-layer"
_states_jit = jax.jit(residual_states, static_argnums=0)


def _kd_step(weights, demos: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``(W_0 + ΔW) phi(W^Q z)`` with ``X_D = demos (P, N, d)``, ``X_Q = z (P, d)``, float64, vectorised."""
    wq, wk, wv = (np.asarray(a, np.float64) for a in weights)
    q = z @ wq.T
    keys = np.concatenate([demos, z[:, None]], axis=1) @ wk.T
    logits = np.einsum("pnk,pk->pn", keys, q)
    probs = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
    return np.einsum("pn,pnv->pv", probs, np.concatenate([demos, z[:, None]], axis=1) @ wv.T)


def analyse(trained, prompts) -> dict:
    mcfg = trained.config.model
    xd, yd, xq, yq = flatten_queries(prompts)
    tokens = make_tokens(mcfg, xd, yd, xq)
    states = [np.asarray(s, np.float64) for s in _states_jit(mcfg, trained.params, tokens)]
    pred = states[-1][:, -1, mcfg.y_index]
    z0 = states[0][:, -1]
    z_frozen = z0.copy()
    layers = []
    for layer in range(mcfg.num_layers):
        zl = states[layer]
        update = states[layer + 1][:, -1] - zl[:, -1]
        exact = np.zeros_like(update)
        frozen_update = np.zeros_like(update)
        for h in range(mcfg.num_heads):
            w = attention_weights(trained.params, layer, h)
            exact += _kd_step(w, zl[:, :-1], zl[:, -1])
            frozen_update += _kd_step(w, states[0][:, :-1], z_frozen)
        # the library's kernel-form decomposition on one prompt, as an independent cross-check
        lib = sum(np.asarray(kd_decomposition(jax.tree.map(lambda a: np.asarray(a, np.float64),
                                                           attention_weights(trained.params, layer, h)),
                                              zl[0, :-1], zl[0, -1:], zl[0, -1:]).output[0]) for h in range(mcfg.num_heads))
        z_frozen = z_frozen + frozen_update
        moved = np.linalg.norm(states[layer + 1][:, -1] - z0, axis=1)
        layers.append({
            "layer": layer + 1,
            "thm31a_max_rel_error": float(np.max(np.linalg.norm(exact - update, axis=1)
                                                 / np.maximum(np.linalg.norm(update, axis=1), 1e-12))),
            "thm31a_library_abs_error": float(np.max(np.abs(lib - update[0]))),
            "frozen_set_rel_deviation": float(np.median(np.linalg.norm(z_frozen - states[layer + 1][:, -1], axis=1)
                                                        / np.maximum(moved, 1e-12))),
            "demo_representation_drift": float(np.median(np.linalg.norm(zl[:, :-1] - states[0][:, :-1], axis=-1)))})
    frozen_pred = z_frozen[:, mcfg.y_index]
    y = np.asarray(yq, np.float64)
    r2 = 1 - np.sum((frozen_pred - pred) ** 2) / np.sum((pred - pred.mean()) ** 2)
    return {"layers": layers, "r2_frozen_kd_vs_model": float(r2), "model_sq_err": (pred - y) ** 2,
            "frozen_kd_sq_err": (frozen_pred - y) ** 2}


def run(opts: C.Options, trained=None) -> C.Result:
    ks = [2] if opts.quick else [2, 3]
    root = jax.random.fold_in(jax.random.key(opts.seed), 505)
    base = C.base_train_config(opts.quick, opts.seed, opts.task)
    results = []
    for i, k in enumerate(ks):
        if trained is None or trained.config.model.num_layers != k:
            mcfg = ModelConfig(**{**base.model.to_dict(), "num_layers": k, "residual": True})
            model = get_or_train(base.__class__(**{**base.__dict__, "model": mcfg,
                                                   "learning_rate": base.learning_rate / 3}), opts.cache_dir,
                                 log=opts.log)
        else:
            model = trained
        prompts = sample_prompts(jax.random.fold_in(root, i), model.config.task, 128 if opts.quick else 512,
                                 n_queries=4)
        res = analyse(model, prompts)
        mse, ci = C.mean_ci(jax.random.fold_in(root, 10 + i), res.pop("model_sq_err"))
        fmse, fci = C.mean_ci(jax.random.fold_in(root, 20 + i), res.pop("frozen_kd_sq_err"))
        zero = float(np.mean(np.asarray(prompts.y_query) ** 2))
        results.append({"num_layers": k, "icl_mse": mse, "icl_mse_ci": ci, "frozen_kd_mse": fmse,
                        "frozen_kd_mse_ci": fci, "zero_predictor_mse": zero, "learned": bool(mse < 0.5 * zero),
                        **res, "model": C.train_summary(model)})
        opts.log(f"  k={k}: model MSE {C.fmt_ci(mse, ci)}, k frozen KD steps {C.fmt_ci(fmse, fci)}, "
                 f"R² {res['r2_frozen_kd_vs_model']:.3f}")
    md = [f"# multi-layer ({'quick' if opts.quick else 'full'})", "",
          "| k | model MSE | k KD steps (frozen set) MSE | R² vs model | zero |", "|---|---|---|---|---|"]
    md += [f"| {r['num_layers']} | {C.fmt_ci(r['icl_mse'], r['icl_mse_ci'])} | "
           f"{C.fmt_ci(r['frozen_kd_mse'], r['frozen_kd_mse_ci'])} | {r['r2_frozen_kd_vs_model']:.3f} | "
           f"{r['zero_predictor_mse']:.3g} |" for r in results]
    md += ["", "| k | layer | Thm 3.1(a) max rel err (layer inputs) | frozen-set deviation | demo drift |",
           "|---|---|---|---|---|"]
    md += [f"| {r['num_layers']} | {l['layer']} | {l['thm31a_max_rel_error']:.2g} | "
           f"{l['frozen_set_rel_deviation']:.3g} | {l['demo_representation_drift']:.3g} |"
           for r in results for l in r["layers"]]

    def fig(plt):
        f, ax = plt.subplots(figsize=(5, 4))
        for r in results:
            ax.plot([l["layer"] for l in r["layers"]], [l["frozen_set_rel_deviation"] for l in r["layers"]], "o-",
                    label=f"k={r['num_layers']}")
        ax.set_xlabel("layer")
        ax.set_ylabel("median ||z̃ − z|| / ||z − z⁰|| (query)")
        ax.legend()
        return f

    return C.Result(NAME, {"models": results}, "\n".join(md), {"deviation": fig})
