"""``thm31-trained``: Theorem 3.1(a) on trained weights (docs/statements.md), one- and two-head models.

The Flax model's prediction must equal ``sum_h (W_0 + ΔW)_h phi(q)`` computed by
``iclkd_jax.kd_decomposition`` from the trained ``(W^Q, W^K, W^V)`` of each head
(``X_D`` = demonstrations, ``X_Q`` = the query token). Also reported: log η and the
attention entropy of the trained heads (the lemma). Every other experiment carries the
same check in its ``thm31a_trained`` field; multi-layer models are checked per layer in
``multi-layer``.
"""

from __future__ import annotations

import jax

from experiments import common as C
from experiments.data import sample_prompts

NAME = "thm31-trained"


def run(opts: C.Options, trained=None) -> C.Result:
    models = {"1-head": trained or C.base_model(opts), "2-head": C.base_model(opts, num_heads=2)}
    root = jax.random.fold_in(jax.random.key(opts.seed), 606)
    out = {}
    for i, (name, model) in enumerate(models.items()):
        prompts = sample_prompts(jax.random.fold_in(root, i), model.config.task, 32, n_queries=2)
        out[name] = {**C.thm31_trained(model, prompts, max_prompts=32), "model": C.train_summary(model)}
        opts.log(f"  {name}: float32 {out[name]['max_rel_error_float32']:.2g}, "
                 f"float64 {out[name].get('max_rel_error_float64', float('nan')):.2g}, holds={out[name]['holds']}")
    md = [f"# thm31-trained ({'quick' if opts.quick else 'full'})", "",
          "| model | max rel err float32 (tol 1e-5) | float64 (tol 1e-12) | mean log η | mean entropy | holds |",
          "|---|---|---|---|---|---|"]
    md += [f"| {n} | {r['max_rel_error_float32']:.2g} | {r.get('max_rel_error_float64', float('nan')):.2g} | "
           f"{r['log_eta_mean']:.3g} | {r['attention_entropy_mean']:.3g} | {r['holds']} |" for n, r in out.items()]
    return C.Result(NAME, {"models": out, "holds": all(r["holds"] for r in out.values())}, "\n".join(md))
