"""``llm-mmd``: MMD between demonstrations and queries against SmolLM2's in-context loss (docs/statements.md#thm-4-1, #thm-4-2).

Task ``copy`` (:mod:`experiments.llm_common`): a prompt is a demonstration list of ``W``
single-token words followed by the query list of ``W`` words. For each level ``rho`` in
``RHOS`` and each prompt, the demonstrations are the query list with ``round(rho W)`` of
its words replaced by random words not in the query, so the demonstration source is at a
controlled distance from the query's.

Measured per prompt, from one float32 forward pass (hidden states cast to float64 for
the MMD): the query loss (mean next-token NLL over the query list), the log MMD^2 of the
position-aware product kernel of a layer's heads between the demonstration tokens and the
query tokens (with their positions), and the RBF MMD^2 on the same hidden states, at two
layers fixed in advance: 0 (the normalised embeddings: the tokens themselves) and
``DEFAULT_LAYER`` (15, mid-depth: contextual states). Reported: the loss per level (bootstrap CI),
Spearman's rho of each MMD with the loss over all prompts, and within levels (the MMD's information beyond the corruption
level; mean over levels), each with a bootstrap CI over prompts.
"""

from __future__ import annotations

import jax
import numpy as np

from experiments import llm_common as L
from experiments import output as O
from experiments import statistics as S
from experiments.configs import Options

NAME = "llm-mmd"
RHOS = (0.0, 0.25, 0.5, 0.75, 1.0)


def run(opts: Options) -> O.Result:
    model = L.load_model(opts)
    words, per_level = (16, 6) if opts.quick else (24, 20)
    layers = (0, L.DEFAULT_LAYER)
    pool = L.word_pool(model)
    rng = np.random.default_rng([opts.seed, 1601])
    rows = []
    for level, rho in enumerate(RHOS):
        for _ in range(per_level):
            chosen = rng.choice(pool, 2 * words, replace=False)
            query, spare = chosen[:words], chosen[words:]
            demo = query.copy()
            swap = rng.choice(words, int(round(rho * words)), replace=False)
            demo[swap] = spare[:swap.size]
            ids = np.concatenate([demo, query])
            out = model.forward(ids, "float32")
            query_pos = np.arange(words, 2 * words - 1)          # predict query[1:] from the query prefix
            loss = float(np.mean(L.next_token_nll(out.logits, ids, query_pos)))
            demo_pos, q_pos = np.arange(words), np.arange(words, 2 * words)
            row = {"rho": rho, "level": level, "loss": loss}
            for layer in layers:
                xs = np.asarray(out.attn_inputs[layer], np.float64)
                row[f"log_mmd2_product_layer{layer}"] = L.product_log_mmd2(model, xs[demo_pos], demo_pos, xs[q_pos],
                                                                           q_pos, layer)
                row[f"mmd2_rbf_layer{layer}"] = L.rbf_mmd2(xs[demo_pos], xs[q_pos])
            rows.append(row)
        opts.log(f"{NAME}: rho={rho}: mean loss {np.mean([r['loss'] for r in rows if r['level'] == level]):.3f}")
    loss = np.array([r["loss"] for r in rows])
    levels = np.array([r["level"] for r in rows])
    key = jax.random.key(opts.seed)
    per_level_loss = {}
    for level, rho in enumerate(RHOS):
        mean, ci = S.mean_ci(jax.random.fold_in(key, level), loss[levels == level])
        per_level_loss[str(rho)] = {"mean": mean, "ci": ci}
    correlations = {}
    measures = [f"{kind}_layer{layer}" for layer in layers for kind in ("log_mmd2_product", "mmd2_rbf")]
    for j, name in enumerate(measures):
        values = np.array([r[name] for r in rows])
        rho_all, ci_all = S.spearman_ci(jax.random.fold_in(key, 100 + j), values, loss)
        within = [S.spearman(values[levels == lv], loss[levels == lv]) for lv in range(len(RHOS))]
        # a level where the MMD is constant (the RBF MMD at rho = 0 on layer 0 is exactly 0) has no rank
        # correlation: it is left out of the mean, and the number of levels used is reported
        finite = [w for w in within if np.isfinite(w)]
        within_mean, within_ci = S.mean_ci(jax.random.fold_in(key, 200 + j), finite) if finite else (np.nan, [np.nan] * 2)
        correlations[name] = {"spearman": rho_all, "ci": ci_all, "within_level_spearman_mean": within_mean,
                              "within_level_ci": within_ci, "within_level_spearman": within,
                              "levels_with_a_within_level_correlation": len(finite)}
    data = {"task": "copy", "layers": list(layers), "words": words, "prompts_per_level": per_level, "rhos": list(RHOS),
            "loss_per_level": per_level_loss, "correlations": correlations, "rows": rows}
    md = [f"# {NAME}: MMD(demonstrations, queries) vs in-context loss (SmolLM2-135M, copy task)", "",
          f"{len(rows)} prompts ({per_level} per corruption level), {words} words each; layers {layers}.", "",
          "| corruption rho | query loss (nats) [95% CI] |", "| --- | --- |"]
    md += [f"| {rho} | {O.fmt_ci(v['mean'], v['ci'])} |" for rho, v in per_level_loss.items()]
    md += ["", "| MMD | Spearman with loss (all prompts) | within corruption levels (mean) |", "| --- | --- | --- |"]
    md += [f"| {n} | {O.fmt_ci(v['spearman'], v['ci'])} | {O.fmt_ci(v['within_level_spearman_mean'], v['within_level_ci'])} |"
           for n, v in correlations.items()]

    def scatter(plt):
        fig, axes = plt.subplots(1, len(measures), figsize=(4.5 * len(measures), 3.5))
        for ax, name in zip(axes, measures, strict=False):
            ax.scatter([r[name] for r in rows], loss, c=levels, cmap="viridis", s=14)
            ax.set_xlabel(name)
            ax.set_ylabel("query loss (nats)")
        fig.suptitle("SmolLM2 copy task: colour = corruption level")
        return fig

    return O.Result(NAME, data, "\n".join(md) + "\n", {"scatter": scatter})
