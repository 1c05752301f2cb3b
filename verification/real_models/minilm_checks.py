"""Theorems 3.1(a) and 4.1 on every attention layer of all-MiniLM-L6-v2 (``iclkd verify --real-model minilm``).

All 6 encoder layers (the ``smoke`` profile of the tests: the first and the last), each at
the hidden states the model itself produces on the prompts (:meth:`MiniLM.layer_inputs`:
BERT's encoder in NumPy float64, checked against all-MiniLM-L6-v2's published sentence
similarities in the tests); what follows describes one layer (layer 0 shown).

Two checks, kind ``theorem``, registered by :mod:`verification.real_models.checks` (they need the ``real``
extra and the model package; see :mod:`verification.real_models.minilm`):

``thm-3.1a@minilm`` (docs/statements.md#thm-3-1a, Theorem 3.1(a)).
  Inputs: ICL prompts written here (sentiment, medical triage, programming
  language; demonstrations then a query), tokenised by the shipped tokenizer,
  embedded as BERT does (word + position + token type, LayerNorm). Each of the
  12 heads of layer 0 is mapped to :class:`iclkd_jax.AttentionWeights` on tokens
  with an appended constant 1 (biases absorbed, ``1/sqrt(d_k)`` folded into
  ``W^K``; :meth:`MiniLM.head_weights`). The reference is BERT's own layer-0
  self-attention recomputed in NumPy float64 from the stored weights, on a padded
  batch of all prompts with its attention mask (:meth:`MiniLM.self_attention`).
  Measured per head: (1) the mapping, ``softmax_attention`` over the whole prompt
  against the reference; (2) the decomposition ``kd_decomposition(weights, X_D, X_Q,
  queries).output`` against the reference at the query tokens. ``X_D`` = the
  demonstrations' tokens; ``X_Q`` = every other token the query attends to:
  BERT is bidirectional, so that is ``[CLS]``, the query segment itself (the
  query token attends to itself) and ``[SEP]``; the queries are all tokens of
  the query segment. Errors are relative to ``max_j |v_j|`` (an attention output
  is a convex combination of the values).

``thm-4.1@minilm`` (docs/statements.md#thm-4-1, Theorem 4.1, empirical measures).
  Token samples: layer-0 inputs of sentences from three domains (movie reviews,
  medical notes, code), ``n`` tokens each (a seeded subsample). For every head and
  every pair of domains (P, Q): ``ΔW = 2η (mean_Q − mean_P) v ⊗ phi(k)`` as a
  :class:`RepresenterOperator` with coefficients ``±1/n`` and ``2η = 1`` (both
  sides scale with η), ``‖ΔW‖_HS`` by :func:`hs_norm` (its ``condition``
  reported), the biased ``MMD_k`` with :func:`product_kernel` of the head's
  ``W^K``, and ``‖W^V‖_op`` by an SVD of the augmented ``(d_k, d+1)`` ``W^V``.
  Reported per head: ratio ``‖ΔW‖ / (2η‖W^V‖_op MMD)`` (must be <= 1) and
  tightness = its inverse. Both quadratic forms are also recomputed in NumPy.

Mutants (``ctx.mutant``, listed by ``iclkd verify --list``) are deliberate bugs each check must catch.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import iclkd_jax as ik
from verification.core.keys import numpy_rng
from verification.core.model import CheckResult, RunContext
from verification.core.tolerances import bound_ratio_status, eps, real_attention_tolerance
from verification.real_models import minilm
from verification.real_models.common import DOMAINS

EPS64 = eps("float64")

#: demonstrations and query of each ICL task; the demonstrations' order is permuted by the seed
TASKS = {
    "sentiment": (
        ["Review: a moving, beautifully acted film. Sentiment: positive.",
         "Review: dull plot and wooden dialogue. Sentiment: negative.",
         "Review: the soundtrack alone is worth the ticket. Sentiment: positive."],
        "Review: I walked out after twenty minutes. Sentiment:"),
    "triage": (
        ["Note: crushing chest pain radiating to the left arm. Triage: urgent.",
         "Note: mild seasonal allergies, requests a refill. Triage: routine.",
         "Note: sudden slurred speech and facial droop. Triage: urgent."],
        "Note: small rash on the forearm, no fever. Triage:"),
    "language": (
        ["Code: def add(a, b): return a + b Language: python.",
         "Code: fn main() { println!(\"hi\"); } Language: rust.",
         "Code: SELECT name FROM users WHERE id = 1; Language: sql."],
        "Code: for i in range(10): print(i) Language:"),
}


MUTANTS_31 = {
    "bias-not-absorbed": "the heads mapped without the constant-1 column (biases dropped)",
    "scale-not-folded": "1/sqrt(d_k) not folded into W^K",
    "wrong-head-slice": "head h built from the rows of head h+1 for W^Q and W^K",
    "transposed-weights": "torch's (out, in) layout ignored: rows of W^T taken as the head",
    "drop-context": "ΔW phi(q) dropped (only the demonstrations' step kept)",
}
MUTANTS_41 = {
    "rbf-kernel-mmd": "MMD with a Gaussian RBF kernel (median bandwidth) instead of Theorem 4.1's product kernel",
    "linear-kernel-mmd": "MMD with the linear kernel x.x' (the exp((W^K x).(W^K x')) factor dropped)",
    "keys-not-scaled": "ΔW built from keys without 1/sqrt(d_k) while the kernel uses the folded W^K",
    "wrong-head-kernel": "MMD with the W^K of head h+1",
    "unbiased-mmd": "the U-statistic MMD (diagonal terms removed), for which the empirical bound is not proved",
}


def _weights(model: minilm.MiniLM, head: int, mutant: str | None) -> ik.AttentionWeights:
    """The head's weights under test (a 3.1a mutant applied where asked)."""
    if mutant == "bias-not-absorbed":
        return model.head_weights(head, absorb_bias=False)
    if mutant == "scale-not-folded":
        return model.head_weights(head, fold_scale=False)
    weights = model.head_weights(head)
    if mutant == "wrong-head-slice":
        other = model.head_weights((head + 1) % model.heads)
        return ik.AttentionWeights(other.wq, other.wk, weights.wv)
    if mutant == "transposed-weights":
        rows = slice(head * model.head_dim, (head + 1) * model.head_dim)

        def affine(w, b, scale=1.0):
            return jnp.asarray(np.concatenate([w.T[rows], b[rows, None]], axis=1) * scale)

        return ik.AttentionWeights(affine(model.wq, model.bq), affine(model.wk, model.bk, model.head_dim ** -0.5),
                                   affine(model.wv, model.bv))
    return weights


def _prompts(model: minilm.MiniLM, n_tasks: int, rng: np.random.Generator):
    prompts = []
    for name in list(TASKS)[:n_tasks]:
        demos, query = TASKS[name]
        order = rng.permutation(len(demos))
        segments = [demos[i] for i in order] + [query]
        enc = model.encode(segments)
        prompts.append((name, enc, len(demos)))
    return prompts


def _layers(model: minilm.MiniLM, profile: str) -> list[int]:
    """The encoder layers a profile checks: all of them, except ``smoke`` (the tests): the first and the last."""
    return [0, model.num_layers - 1] if profile == "smoke" else list(range(model.num_layers))


def check_31a(model: minilm.MiniLM, ctx: RunContext) -> CheckResult:
    n_tasks, mutant, seed, profile = ctx.profile.real_prompts, ctx.mutant, ctx.seed, ctx.profile.name
    rng = numpy_rng(ctx.key)
    prompts = _prompts(model, n_tasks, rng)
    layers = _layers(model, profile)
    # The model's own hidden states entering each layer, on a padded batch of all prompts with its mask;
    # the reference: each layer's self-attention recomputed from them (MiniLM.self_attention).
    length = max(enc.ids.shape[0] for _, enc, _ in prompts)
    batch_ids = np.zeros((len(prompts), length), np.int64)  # [PAD] = 0 beyond the prompt
    batch_types = np.zeros((len(prompts), length), np.int64)
    mask = np.zeros((len(prompts), length))
    for b, (_, enc, _) in enumerate(prompts):
        n = enc.ids.shape[0]
        batch_ids[b, :n], batch_types[b, :n], mask[b, :n] = enc.ids, enc.type_ids, 1.0
    states = model.layer_inputs(batch_ids, batch_types, mask)          # (L, b, length, d)

    shape = (len(layers), model.heads)
    rows = [slice(h * model.head_dim, (h + 1) * model.head_dim) for h in range(model.heads)]
    mapping_err, decomposition_err, logit_bound = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    log_eta, demo_mass = np.zeros(shape), np.zeros(shape)
    sizes = []
    for li, layer in enumerate(layers):
        lm = model.at_layer(layer)
        reference = lm.self_attention(states[layer], mask)          # (b, heads, length, d_k)
        for b, (name, enc, n_demos) in enumerate(prompts):
            n = enc.ids.shape[0]
            x = states[layer, b, :n]
            xa = minilm.augment(x)
            demo_idx = np.flatnonzero((enc.segment >= 0) & (enc.segment < n_demos))
            context_idx = np.flatnonzero((enc.segment < 0) | (enc.segment >= n_demos))
            query_idx = np.flatnonzero(enc.segment == n_demos)
            if li == 0:
                sizes.append({"task": name, "tokens": int(n), "N_demo_tokens": int(demo_idx.size),
                              "M_context_tokens": int(context_idx.size), "queries": int(query_idx.size)})
            xd, xc, xq = (jnp.asarray(xa[i]) for i in (demo_idx, context_idx, query_idx))
            for h in range(model.heads):
                # scales from the stored weights (independent of the mapping under test)
                q = x @ lm.wq[rows[h]].T + lm.bq[rows[h]]
                k = (x @ lm.wk[rows[h]].T + lm.bk[rows[h]]) / np.sqrt(model.head_dim)
                v = x @ lm.wv[rows[h]].T + lm.bv[rows[h]]
                value_scale = np.abs(v).max()
                logit_bound[li, h] = max(logit_bound[li, h],
                                         np.linalg.norm(k, axis=1).max() * np.linalg.norm(q, axis=1).max())
                ref = reference[b, h, :n]
                weights = _weights(lm, h, mutant)
                mapped = np.asarray(ik.softmax_attention(weights, jnp.asarray(xa), jnp.asarray(xa)))
                mapping_err[li, h] = max(mapping_err[li, h], np.abs(mapped - ref).max() / value_scale)
                dec = ik.kd_decomposition(weights, xd, xc, xq)
                out = np.asarray(dec.w0_out) if mutant == "drop-context" else np.asarray(dec.output)
                decomposition_err[li, h] = max(decomposition_err[li, h],
                                               np.abs(out - ref[query_idx]).max() / value_scale)
                log_eta[li, h] += float(np.mean(np.asarray(dec.log_eta))) / len(prompts)
                # the demonstrations' share of the query's attention (reported, not judged)
                logits = (q[query_idx] @ k.T)
                probs = np.exp(logits - logits.max(axis=1, keepdims=True))
                probs /= probs.sum(axis=1, keepdims=True)
                demo_mass[li, h] += float(probs[:, demo_idx].sum(axis=1).mean()) / len(prompts)
    tolerance = real_attention_tolerance(logit_bound.max())  # d+1 = 385 here
    both = np.maximum(mapping_err, decomposition_err)
    worst_li, worst_head = np.unravel_index(np.argmax(both), both.shape)
    max_rel = float(decomposition_err.max())
    violated = bool(both.max() > tolerance) or not np.all(np.isfinite(decomposition_err))
    figures = {
        "heads": model.heads, "layers": layers, "max_rel_error": max_rel, "max_mapping_rel_error": float(mapping_err.max()),
        "per_head_rel_error": decomposition_err.max(axis=0).tolist(),
        "per_head_mapping_rel_error": mapping_err.max(axis=0).tolist(),
        "per_layer_max_rel_error": decomposition_err.max(axis=1).tolist(),
        "per_layer_worst_head": decomposition_err.argmax(axis=1).tolist(),
        "per_layer_head_rel_error": decomposition_err.tolist(),
        "per_layer_head_max_logit_bound": logit_bound.tolist(), "per_layer_head_mean_log_eta": log_eta.tolist(),
        "per_layer_head_demo_attention_mass": demo_mass.tolist(), "prompts": sizes, "model_dir": str(model.directory),
    }
    return CheckResult(
        id=ctx.check_id, kind="theorem", status="violated" if violated else "holds",
        cases=len(prompts) * model.heads * len(layers),
        worst=float(both.max()), worst_label="max rel error (vs max|v_j|)", tolerance=tolerance,
        tolerance_reason=("64*eps64*(1 + max_h max|q||k|): round-off of the logits (dot products of length d+1) "
                          "relative to max|v_j|, capped at 1e-10; docs/statements.md#thm-3-1a"),
        figures=figures, seed=seed, mutant=mutant,
        counterexample=({"layer": layers[worst_li], "head": int(worst_head),
                         "rel_error": float(decomposition_err[worst_li, worst_head]),
                         "mapping_rel_error": float(mapping_err[worst_li, worst_head])} if violated else None),
        summary=(f"{model.heads} heads x {len(layers)} layers on {len(prompts)} ICL prompt(s): max rel error "
                 f"{max_rel:.2e} (mapping {mapping_err.max():.2e}), tolerance {tolerance:.1e}, "
                 f"logits up to {logit_bound.max():.3g}"))


def domain_tokens(model: minilm.MiniLM, n_tokens: int, rng: np.random.Generator,
                  layer: int = 0) -> dict[str, np.ndarray]:
    """Layer ``layer``'s inputs (augmented, ``(n, d+1)``) of each domain's sentences, ``n_tokens`` each (a seeded
    subsample; the same rng state picks the same tokens at every layer)."""
    pools = {}
    for name, sentences in DOMAINS.items():
        enc = model.encode(sentences)
        states = model.layer_inputs(enc.ids[None], enc.type_ids[None], np.ones((1, enc.ids.shape[0])))
        x = states[layer, 0][enc.segment >= 0]
        pools[name] = minilm.augment(x)
    n = min(min(p.shape[0] for p in pools.values()), n_tokens)  # at most the smallest domain's tokens
    return {name: pool[np.sort(rng.choice(pool.shape[0], n, replace=False))] for name, pool in pools.items()}


def _quadratic_form(coef, gram_linear, log_kernel):
    """(sum_ij c_i c_j G_ij exp(L_ij), condition) in float64 NumPy with the max of L factored out."""
    shift = log_kernel.max()
    terms = np.outer(coef, coef) * gram_linear * np.exp(log_kernel - shift)
    total = terms.sum()
    return total * np.exp(shift), float(np.abs(terms).sum() / abs(total)) if total != 0 else np.inf


def check_41(model: minilm.MiniLM, ctx: RunContext) -> CheckResult:
    n_tokens, mutant, seed, profile = ctx.profile.real_tokens, ctx.mutant, ctx.seed, ctx.profile.name
    layers = _layers(model, profile)
    layer_samples = {layer: domain_tokens(model, n_tokens, numpy_rng(ctx.key), layer=layer)
                     for layer in layers}
    names = list(layer_samples[layers[0]])
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    n = layer_samples[layers[0]][names[0]].shape[0]
    coef = np.concatenate([-np.full(n, 1.0 / n), np.full(n, 1.0 / n)])  # ΔW = W̄(Q) − W̄(P), 2η = 1
    heads = model.heads
    shape = (len(layers), heads, len(pairs))
    observed, bounds = np.zeros(shape), np.zeros(shape)
    cond_hs, cond_mmd, crosscheck = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    clipped = False
    op_norms = np.zeros((len(layers), heads))
    max_log_kernel = 0.0
    for li, layer in enumerate(layers):
        lm, samples = model.at_layer(layer), layer_samples[layer]
        for h in range(heads):
            weights = lm.head_weights(h)
            wk, wv = np.asarray(weights.wk), np.asarray(weights.wv)
            op_norms[li, h] = np.linalg.norm(wv, 2)            # float64 SVD, backward stable
            wk_kernel = np.asarray(lm.head_weights((h + 1) % heads).wk) if mutant == "wrong-head-kernel" else wk
            wk_delta = wk * np.sqrt(model.head_dim) if mutant == "keys-not-scaled" else wk
            for s in samples.values():
                max_log_kernel = max(max_log_kernel, float(np.max(np.sum((s @ wk.T) ** 2, axis=1))))
            for p, (a, b) in enumerate(pairs):
                x = np.concatenate([samples[a], samples[b]])
                op = ik.RepresenterOperator(jnp.asarray(coef), jnp.asarray(x @ wv.T), jnp.asarray(x @ wk_delta.T),
                                            jnp.asarray(0.0))
                hs = ik.hs_norm(op)
                hs_value, cond_hs[li, h, p] = float(hs.value), float(hs.condition)
                clipped |= bool(hs.clipped)
                xa, xb = jnp.asarray(samples[a]), jnp.asarray(samples[b])
                if mutant == "rbf-kernel-mmd":
                    kernel = ik.rbf_kernel(bandwidth=ik.median_bandwidth(xa, xb))
                elif mutant == "linear-kernel-mmd":
                    kernel = ik.linear_kernel()
                else:
                    kernel = ik.product_kernel(jnp.asarray(wk_kernel))
                estimator = "unbiased" if mutant == "unbiased-mmd" else "biased"
                mmd2 = float(ik.mmd2(xa, xb, kernel, estimator=estimator))
                keys = x @ wk.T
                ref_mmd2, cond_mmd[li, h, p] = _quadratic_form(coef, x @ x.T, keys @ keys.T)
                ref_hs, _ = _quadratic_form(coef, (x @ wv.T) @ (x @ wv.T).T, keys @ keys.T)
                crosscheck[li, h, p] = max(abs(hs_value - ref_hs) / abs(ref_hs), abs(mmd2 - ref_mmd2) / abs(ref_mmd2))
                bound = op_norms[li, h] * np.sqrt(max(mmd2, 0.0))  # 2η = 1
                observed[li, h, p], bounds[li, h, p] = np.sqrt(hs_value), bound
    # Tolerance on the ratio: each quadratic form (‖ΔW‖², MMD²) is a sum of terms with relative error
    # ~ eps (1 + |k_i.k_j|) (the exp of a rounded dot product) amplified by its condition sum|t|/|sum t|;
    # the SVD norm adds ~eps. 64 eps (cond_hs + cond_mmd)(1 + max k.k) bounds the relative error of ratio².
    per_pair_tol = 64 * EPS64 * (cond_hs + cond_mmd) * (1.0 + max_log_kernel)
    status, tolerance, ratio = bound_ratio_status(observed, bounds, crosscheck, per_pair_tol)
    tightness = 1.0 / ratio
    worst_l, worst_h, worst_p = np.unravel_index(np.argmax(ratio), ratio.shape)
    figures = {
        "heads": heads, "layers": layers, "pairs": [f"{a}|{b}" for a, b in pairs], "tokens_per_domain": int(n),
        "max_ratio": float(ratio.max()), "per_head_ratio": ratio.max(axis=(0, 2)).tolist(),
        "per_head_tightness": tightness.min(axis=(0, 2)).tolist(),
        "per_layer_max_ratio": ratio.max(axis=(1, 2)).tolist(),
        "per_layer_min_tightness": tightness.min(axis=(1, 2)).tolist(),
        "per_layer_median_tightness": np.median(tightness.reshape(len(layers), -1), axis=1).tolist(),
        "per_layer_head_op_norm_wv": op_norms.tolist(), "ratio_by_layer_head_pair": ratio.tolist(),
        "hs_condition_max": float(cond_hs.max()), "mmd_condition_max": float(cond_mmd.max()),
        "max_crosscheck_rel_error": float(crosscheck.max()), "hs_clipped": clipped,
        "max_log_kernel": max_log_kernel, "two_eta": 1.0,
    }
    return CheckResult(
        id=ctx.check_id, kind="theorem", status=status, cases=len(layers) * heads * len(pairs),
        worst=float(ratio.max()), worst_label="max ‖ΔW‖/(2η‖W^V‖ MMD)", tolerance=1.0 + tolerance,
        tolerance_reason=("ratio <= 1 + 64*eps64*(cond_HS + cond_MMD)*(1 + max k.k) per head and pair "
                          "(round-off of two conditioned quadratic forms); docs/statements.md#thm-4-1"),
        tightness=float(tightness.min()), figures=figures, seed=seed, mutant=mutant,
        counterexample=({"layer": layers[worst_l], "head": int(worst_h),
                         "pair": f"{pairs[worst_p][0]}|{pairs[worst_p][1]}",
                         "ratio": float(ratio[worst_l, worst_h, worst_p])} if status == "violated" else None),
        summary=(f"{heads} heads x {len(layers)} layers x {len(pairs)} domain pairs, {n} tokens each: max ratio "
                 f"{ratio.max():.3g}, tightness {tightness.min():.3g}..{tightness.max():.3g}, "
                 f"HS condition <= {cond_hs.max():.3g}"))

