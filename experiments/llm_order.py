"""``llm-order``: log D' and attention entropy against sensitivity to demonstration order (Lemma).

Task ``recall`` (:mod:`experiments.llm_common`): ``N`` demonstration lines
``" key: value\\n"`` of random single-token words, then the query line ``" key:"`` of one
demonstrated key; the loss is the NLL of its value. Each prompt is evaluated under ``K``
random orders of its demonstrations (the queried pair moves too).

Measured per prompt: the sensitivity to order = the standard deviation of the loss over
the ``K`` orders; and, at the query position (the ``":"`` after the key), the learning-rate
proxy ``log D'`` (docs/statements.md#lemma-eta, Lemma: ``eta = N/(2D')``) and the attention entropy of
every head of layer ``DEFAULT_LAYER`` (mean over heads, then over orders), both from the
forward pass (:class:`iclkd_jax.llama.LlamaOutput`). ``N`` varies across prompts (2, 4, 8)
so that the attention's spread varies. Reported: Spearman's rho of each with the
sensitivity, over prompts, with bootstrap CIs; the mean loss and accuracy by ``N``.
"""

from __future__ import annotations

import jax
import numpy as np

from experiments import llm_common as L
from experiments import output as O
from experiments import statistics as S
from experiments.configs import Options

NAME = "llm-order"
SIZES = (2, 4, 8)


def recall_prompt(model, keys, values, query_index):
    """Ids and the position whose next token is the queried value."""
    colon = model.encode(":")
    newline = model.encode("\n")
    ids = []
    for k, v in zip(keys, values, strict=False):
        ids += [int(k), *colon, int(v), *newline]
    ids += [int(keys[query_index]), *colon]
    return np.asarray(ids + [int(values[query_index])]), len(ids) - 1


def run(opts: Options) -> O.Result:
    model = L.load_model(opts)
    per_size, orders = (5, 4) if opts.quick else (20, 8)
    layer = L.DEFAULT_LAYER
    pool = L.word_pool(model)
    rng = np.random.default_rng([opts.seed, 1602])
    rows = []
    for n in SIZES:
        for _ in range(per_size):
            words = rng.choice(pool, 2 * n, replace=False)
            keys, values = words[:n], words[n:]
            target = int(rng.integers(n))
            losses, log_d, entropy, correct = [], [], [], []
            for _ in range(orders):
                perm = rng.permutation(n)
                ids, t = recall_prompt(model, keys[perm], values[perm], int(np.flatnonzero(perm == target)[0]))
                out = model.forward(ids[:-1], "float32")
                nll = L.next_token_nll(out.logits, ids, [t])[0]
                losses.append(float(nll))
                correct.append(bool(np.argmax(np.asarray(out.logits[t])) == ids[t + 1]))
                log_d.append(float(np.mean(np.asarray(out.log_partition[layer, :, t]))))
                entropy.append(float(np.mean(np.asarray(out.attention_entropy[layer, :, t]))))
            rows.append({"N": n, "loss_mean": float(np.mean(losses)), "sensitivity": float(np.std(losses)),
                         "log_partition": float(np.mean(log_d)), "log_eta": float(np.log(n / 2) - np.mean(log_d)),
                         "attention_entropy": float(np.mean(entropy)), "accuracy": float(np.mean(correct))})
        opts.log(f"{NAME}: N={n}: mean loss {np.mean([r['loss_mean'] for r in rows if r['N'] == n]):.3f}")
    key = jax.random.key(opts.seed)
    sens = np.array([r["sensitivity"] for r in rows])
    correlations = {}
    sizes = np.array([r["N"] for r in rows])
    for j, name in enumerate(("log_partition", "log_eta", "attention_entropy")):
        values = np.array([r[name] for r in rows])
        value, ci = S.spearman_ci(jax.random.fold_in(key, j), values, sens)
        # log D' grows with the number of keys, and so may the sensitivity: the correlation within each N
        # (mean over the sizes) is the part not explained by N
        within = [S.spearman(values[sizes == n], sens[sizes == n]) for n in SIZES]
        finite = [w for w in within if np.isfinite(w)]
        within_mean, within_ci = S.mean_ci(jax.random.fold_in(key, 20 + j), finite) if finite else (np.nan, [np.nan] * 2)
        correlations[name] = {"spearman": value, "ci": ci, "within_size_spearman_mean": within_mean,
                              "within_size_ci": within_ci, "within_size_spearman": within}
    by_size = {}
    for j, n in enumerate(SIZES):
        sub = [r for r in rows if r["N"] == n]
        mean, ci = S.mean_ci(jax.random.fold_in(key, 10 + j), [r["loss_mean"] for r in sub])
        by_size[str(n)] = {"loss": mean, "loss_ci": ci, "accuracy": float(np.mean([r["accuracy"] for r in sub])),
                           "sensitivity": float(np.mean([r["sensitivity"] for r in sub]))}
    data = {"task": "recall", "layer": layer, "orders": orders, "prompts_per_size": per_size,
            "correlations_with_order_sensitivity": correlations, "by_size": by_size, "rows": rows}
    md = [f"# {NAME}: log D' and attention entropy vs sensitivity to demonstration order (SmolLM2-135M)", "",
          f"{len(rows)} recall prompts, {orders} orders each; layer {layer} at the query position.", "",
          "| N | loss (nats) [95% CI] | accuracy | sensitivity (std over orders) |", "| --- | --- | --- | --- |"]
    md += [f"| {n} | {O.fmt_ci(v['loss'], v['loss_ci'])} | {v['accuracy']:.2f} | {v['sensitivity']:.3f} |"
           for n, v in by_size.items()]
    md += ["", "| quantity | Spearman with order sensitivity [95% CI] | within each N (mean) |", "| --- | --- | --- |"]
    md += [f"| {n} | {O.fmt_ci(v['spearman'], v['ci'])} | "
           f"{O.fmt_ci(v['within_size_spearman_mean'], v['within_size_ci'])} |" for n, v in correlations.items()]

    def scatter(plt):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for ax, name in zip(axes, ("log_partition", "attention_entropy"), strict=False):
            ax.scatter([r[name] for r in rows], sens, c=[r["N"] for r in rows], s=14)
            ax.set_xlabel(name)
            ax.set_ylabel("std of the loss over orders")
        return fig

    return O.Result(NAME, data, "\n".join(md) + "\n", {"scatter": scatter})
