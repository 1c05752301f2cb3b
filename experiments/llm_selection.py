"""``llm-selection``: choosing demonstrations for SmolLM2 by MMD, at random, or by nearest neighbours (Theorem 4.2).

Task ``copy`` (:mod:`experiments.llm_common`). Per prompt: a query list of ``W`` random
single-token words and a pool of candidate demonstrations, each a list of ``W`` words
from a source at a controlled distance from the query: the query list with a fraction
``rho`` of its words replaced by random words, two candidates for each ``rho`` in
``POOL_RHOS`` (``rho = 1``: unrelated words). ``N = 2`` candidates are chosen, the prompt is
the chosen candidates then the query list, and the loss is the mean next-token NLL over
the query list.

Every candidate and the query are embedded by a forward pass of their own (layer
``DEFAULT_LAYER``'s attention inputs, positions from 0). Strategies:

* ``mmd-rbf``: the pair whose pooled tokens minimise the RBF MMD^2 to the query's tokens
  (all pairs enumerated; :func:`iclkd_jax.mmd2`);
* ``mmd-product``: the same with the position-aware product kernel of the layer's heads
  (:func:`experiments.llm_common.product_log_mmd2`);
* ``knn``: the two candidates whose mean hidden state is closest in cosine to the query's
  (nearest-neighbour retrieval);
* ``random``: a uniformly random pair.

Reported: the loss per strategy with a bootstrap CI over prompts, the paired difference
to ``random`` with its CI, and the mean corruption ``rho`` of the chosen candidates.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np

from experiments import llm_common as L
from experiments import output as O
from experiments import statistics as S
from experiments.configs import Options

NAME = "llm-selection"
POOL_RHOS = (0.25, 0.5, 0.75, 1.0)
STRATEGIES = ("mmd-rbf", "mmd-product", "knn", "random")


def run(opts: Options) -> O.Result:
    model = L.load_model(opts)
    words, prompts = (12, 6) if opts.quick else (16, 24)
    layer = L.DEFAULT_LAYER
    pool_ids = L.word_pool(model)
    rng = np.random.default_rng([opts.seed, 1603])
    positions = np.arange(words)
    rows = []
    for i in range(prompts):
        chosen = rng.choice(pool_ids, words + 2 * len(POOL_RHOS) * words, replace=False)
        query, spare = chosen[:words], chosen[words:].reshape(-1, words)
        candidates, rhos = [], []
        for j, rho in enumerate(np.repeat(POOL_RHOS, 2)):
            cand = query.copy()
            swap = rng.choice(words, int(round(rho * words)), replace=False)
            cand[swap] = spare[j, :swap.size]
            candidates.append(cand)
            rhos.append(float(rho))

        def states(ids):
            return np.asarray(model.forward(ids, "float32").attn_inputs[layer], np.float64)

        cand_states = [states(c) for c in candidates]
        query_states = states(query)
        pairs = list(itertools.combinations(range(len(candidates)), 2))
        picks = {
            "mmd-rbf": min(pairs, key=lambda ab: L.rbf_mmd2(np.concatenate([cand_states[a] for a in ab]), query_states)),
            "mmd-product": min(pairs, key=lambda ab: L.product_log_mmd2(
                model, np.concatenate([cand_states[a] for a in ab]), np.concatenate([positions, positions]),
                query_states, positions, layer)),
            "random": pairs[int(rng.integers(len(pairs)))],
        }
        means = np.stack([s.mean(axis=0) for s in cand_states])
        cosine = means @ query_states.mean(axis=0) / (np.linalg.norm(means, axis=1) *
                                                       np.linalg.norm(query_states.mean(axis=0)))
        picks["knn"] = tuple(sorted(np.argsort(-cosine)[:2].tolist()))
        row = {"prompt": i}
        for name in STRATEGIES:
            a, b = picks[name]
            ids = np.concatenate([candidates[a], candidates[b], query])
            start = 2 * words
            nll = L.next_token_nll(model.forward(ids, "float32").logits, ids, np.arange(start, start + words - 1))
            row[name] = {"loss": float(np.mean(nll)), "rho": float(np.mean([rhos[a], rhos[b]])), "pair": [a, b]}
        rows.append(row)
        opts.log(f"{NAME}: prompt {i}: " + ", ".join(f"{s} {row[s]['loss']:.2f}" for s in STRATEGIES))
    key = jax.random.key(opts.seed)
    summary = {}
    for j, name in enumerate(STRATEGIES):
        loss = np.array([r[name]["loss"] for r in rows])
        mean, ci = S.mean_ci(jax.random.fold_in(key, j), loss)
        diff, diff_ci = S.mean_ci(jax.random.fold_in(key, 10 + j), loss - np.array([r["random"]["loss"] for r in rows]))
        summary[name] = {"loss": mean, "ci": ci, "minus_random": diff, "minus_random_ci": diff_ci,
                         "mean_rho_chosen": float(np.mean([r[name]["rho"] for r in rows]))}
    data = {"task": "copy", "layer": layer, "words": words, "prompts": prompts, "pool_rhos": list(POOL_RHOS),
            "strategies": summary, "rows": rows}
    md = [f"# {NAME}: demonstration selection for SmolLM2-135M (copy task)", "",
          f"{prompts} prompts, a pool of {2 * len(POOL_RHOS)} candidates of {words} words, 2 chosen; layer {layer}.", "",
          "| strategy | query loss [95% CI] | minus random [95% CI] | mean rho of the chosen |", "| --- | --- | --- | --- |"]
    md += [f"| {n} | {O.fmt_ci(v['loss'], v['ci'])} | {O.fmt_ci(v['minus_random'], v['minus_random_ci'])} | "
           f"{v['mean_rho_chosen']:.2f} |" for n, v in summary.items()]

    def bars(plt):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        means = [summary[s]["loss"] for s in STRATEGIES]
        err = np.array([[summary[s]["loss"] - summary[s]["ci"][0], summary[s]["ci"][1] - summary[s]["loss"]]
                        for s in STRATEGIES]).T
        ax.bar(STRATEGIES, means, yerr=err)
        ax.set_ylabel("query loss (nats)")
        return fig

    return O.Result(NAME, data, "\n".join(md) + "\n", {"loss": bars})
