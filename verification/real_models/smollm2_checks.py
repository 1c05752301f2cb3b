"""Theorems 3.1(a) and 4.1 on every attention head of SmolLM2-135M (``iclkd verify --real-model smollm2``).

docs/statements.md#real-models, "Real models": each of the 270 query heads (30 layers x 9, grouped-query
attention with 3 key/value heads, rotary positions, causal mask) is Theorem 3.1 with
position-dependent keys ``k_j = R(p_j) W^K x_j``. The tokens ``x`` are the hidden
states the model itself produces (:func:`iclkd_jax.llama.llama_forward` in float64,
``attn_inputs``: the RMSNorm-ed residual stream entering each attention block).

Position-aware tokens. The library's functions take tokens and linear maps; a
``(token, position)`` pair enters them as the lifted token
``z = [x ; R(p) W^K_g x / sqrt(64) ; R(p) W^Q_h x]`` (``d + 128`` coordinates; the
rotations by :func:`iclkd_jax.llama.apply_rope`), with the maps ``W^K = [0 I 0]``,
``W^Q = [0 0 I]``, ``W^V = [W^V_g 0 0]``: then ``W^K z_j . W^Q z_t`` is the model's
logit and ``W^V z_j`` its value, exactly.

``thm-3.1a@smollm2`` (Theorem 3.1(a)). Inputs: ICL prompts written here (demonstration
lines, then a query line), tokenised by the model's tokenizer, positions from 0 (no
BOS). For every layer, head and query position ``t`` of the query line:
``kd_decomposition(W, Z[demonstrations], Z[query line up to t], Z[t]).output`` against
the reference :func:`verification.oracles.reference.llama_head_attention` (NumPy float64,
complex rotations, no iclkd_jax) at the same hidden states. Also measured: the
forward pass's own per-head outputs against the same reference (the "mapping").
Errors are relative to the head's ``max_j |v_j|``. Tolerance ``64 eps64 (1 + max|q||k|)``
capped at 1e-10.

``thm-4.1@smollm2`` (Theorem 4.1 on empirical measures, position-aware product kernel
``k((x,p),(x',p')) = (x.x') exp((R(p)W^K x).(R(p')W^K x'))``). Token samples: the
hidden states of each layer at ``n`` seeded positions of plain text of three domains
(movie reviews, medical notes, code; the sentences of :data:`verification.real_models.common.DOMAINS`).
For every head ``h`` (teacher ``W^O_h W^V_g``, docs/statements.md#real-models "Multi-head with output
projection") and pair of domains: ``ΔW`` by :func:`iclkd_jax.distilled_weight_difference`
(``2 eta = 1``: both sides scale with eta) and ``||ΔW||_HS`` by :func:`iclkd_jax.hs_norm`;
``MMD_k`` as the distance of the mean embeddings of ``x ⊗ phi(R(p) W^K x)`` (the
definition in Theorem 4.1's proof), i.e. the same two library functions with
``W^V = [I 0]`` (``iclkd_jax.mmd2`` has no position-aware kernel); ``||W^O_h W^V_g||_op``
by a float64 SVD. Both quadratic forms are recomputed by the reference
(``position_product_mmd2``, ``log_hs_norm2``). Reported per head: ratio
``||ΔW|| / (||W^O_h W^V_g|| MMD_k)`` (<= 1) and tightness = 1/ratio, summarised per layer.

``worst_case`` is None: the inputs are hidden states of a 135M-parameter model (the
figures name the layer, head and position of the worst case instead).
"""

from __future__ import annotations

import functools
import weakref

import jax
import jax.numpy as jnp
import numpy as np

import iclkd_jax as ik
from iclkd_jax.llama import apply_rope
from verification.core.keys import numpy_rng
from verification.core.model import CheckResult, RunContext
from verification.core.tolerances import bound_ratio_status, eps, real_attention_tolerance
from verification.oracles import reference
from verification.real_models import smollm2
from verification.real_models.common import DOMAINS

EPS64 = eps("float64")

#: ICL prompts: demonstration lines then the query line (each demonstration ends with a newline)
TASKS = {
    "capitals": (["France: Paris\n", "Japan: Tokyo\n", "Italy: Rome\n", "Egypt: Cairo\n"], "Spain: Madrid"),
    "antonyms": (["hot -> cold\n", "big -> small\n", "fast -> slow\n", "up -> down\n"], "light -> dark"),
    "plurals": (["cat: cats\n", "dog: dogs\n", "box: boxes\n", "child: children\n"], "mouse: mice"),
}

MUTANTS_31 = {
    "half-split-rope": "rotary pairs (i, i + 32) (the Hugging Face layout) instead of the GGUF's adjacent (2i, 2i + 1)",
    "keys-unrotated": "keys without R(p) (positions dropped from the keys)",
    "wrong-kv-group": "query head h reads key/value head h % 3 instead of h // 3",
    "scale-not-folded": "1/sqrt(d_head) not folded into W^K",
    "drop-context": "ΔW phi(q) dropped (only the demonstrations' step kept)",
}
MUTANTS_41 = {
    "positions-ignored": "MMD with Theorem 4.1's kernel on x alone (iclkd_jax.product_kernel, no R(p))",
    "rbf-kernel-mmd": "MMD with a Gaussian RBF kernel on x (median bandwidth)",
    "wrong-kv-group-kernel": "MMD with the W^K of key/value head (g + 1) % 3",
}


def _rotate(x, positions, base, mutant=None):
    """``R(p) x`` for rows ``x (..., n, d_head)`` by the library's rotary map (or a mutant layout), one call for
    every leading index (every layer and head at once)."""
    if mutant == "half-split-rope":
        half = x.shape[-1] // 2
        perm = np.stack([np.arange(half), np.arange(half) + half], axis=1).reshape(-1)   # (0,32,1,33,...)
        inverse = np.argsort(perm)
        return np.asarray(apply_rope(jnp.asarray(x[..., perm]), jnp.asarray(positions), base))[..., inverse]
    if mutant == "keys-unrotated":
        return np.asarray(x)
    return np.asarray(apply_rope(jnp.asarray(x), jnp.asarray(positions), base))


def _selection_maps(d, head_dim):
    """``W^Q = [0 0 I]``, ``W^K = [0 I 0]`` on lifted tokens ``[x ; key ; query]``, and the zero blocks of ``W^V``."""
    eye, zero_x, zero_k = np.eye(head_dim), np.zeros((head_dim, d)), np.zeros((head_dim, head_dim))
    return np.concatenate([zero_x, zero_k, eye], axis=1), np.concatenate([zero_x, eye, zero_k], axis=1), zero_k


def _kd_every_head(wq, wk, wv, demos, context, queries):
    """:func:`iclkd_jax.kd_decomposition` of every (layer, key/value group, query head of the group) at once.

    ``wq, wk (d_head, D)`` are shared, ``wv (L, G_kv, d_head, D)`` is one per group, the tokens are
    ``(L, G_kv, heads per group, rows, D)``: the library's function under ``jax.vmap`` (one compiled call per
    query position instead of one per head and position).
    """
    def one(wv, demos, context, queries):
        return ik.kd_decomposition(ik.AttentionWeights(wq, wk, wv), demos, context, queries)

    per_group = jax.vmap(one, in_axes=(None, 0, 0, 0))      # the heads of a group read the same W^V
    return jax.vmap(jax.vmap(per_group))(wv, demos, context, queries)


_kd_every_head = jax.jit(_kd_every_head)


def _layer_weights(model, chosen):
    """The chosen layers' ``wq, wk, wv`` in float64, ``(L, rows, d)`` each."""
    return {k: np.asarray(model.arrays[k][np.asarray(chosen)], np.float64) for k in ("wq", "wk", "wv")}


def _layer_list(model, layers):
    """All layers, or the given subset (the tests use subsets to stay within the CI budget; the CLI checks all)."""
    chosen = list(range(model.config.layers)) if layers is None else [int(i) for i in layers]
    if not chosen or min(chosen) < 0 or max(chosen) >= model.config.layers:
        raise ValueError(f"layers must be a non-empty subset of 0..{model.config.layers - 1}, got {layers}")
    return chosen


def _model_cache(model) -> dict:
    """A dict kept per model object for this process: hidden states and teachers, which the checks of one process
    meet again (a self-test's mutants, a sweep's seeds, the domain texts at every seed). Keyed by the object itself,
    so a modified copy of a model (tests/verification/_planted_models.py) gets its own."""
    entry = _MODEL_CACHES.get(id(model))
    if entry is None or entry[0]() is not model:
        entry = _MODEL_CACHES[id(model)] = (weakref.ref(model), {})
        # the cached arrays go with the model (its id may then be reused by another object)
        weakref.finalize(model, _MODEL_CACHES.pop, id(model), None)
    return entry[1]


_MODEL_CACHES: dict = {}
_PROMPTS_KEPT = 8


def _prompt_states(model, ids):
    """``(attn_inputs (layers, n, d), head_outputs (layers, heads, n, d_head))`` of the float64 forward pass on
    ``ids`` (the last few prompts kept per model and process)."""
    kept = _model_cache(model).setdefault("prompts", {})
    key = np.asarray(ids, np.int64).tobytes()
    if key not in kept:
        if len(kept) >= _PROMPTS_KEPT:
            kept.pop(next(iter(kept)))
        out = model.forward(ids, "float64")
        kept[key] = (np.asarray(out.attn_inputs), np.asarray(out.head_outputs))
    return kept[key]


def check_31a(model: smollm2.SmolLM2, ctx: RunContext, *, layers=None) -> CheckResult:
    n_prompts, mutant, seed = ctx.profile.real_prompts, ctx.mutant, ctx.seed
    c = model.config
    rng = numpy_rng(ctx.key)
    chosen = _layer_list(model, layers)
    layers, heads, head_dim, group, d = len(chosen), c.heads, c.head_dim, c.heads // c.kv_heads, c.hidden
    w = _layer_weights(model, chosen)
    # the key/value group each query head reads (a mutant reads the wrong one), and the heads reading each group
    kv_of_head = np.array([h % c.kv_heads if mutant == "wrong-kv-group" else h // group for h in range(heads)])
    heads_of_group = np.array([np.flatnonzero(kv_of_head == g) for g in range(c.kv_heads)])    # (G_kv, group)
    rows = [slice(i * head_dim, (i + 1) * head_dim) for i in range(heads)]
    scale = 1.0 if mutant == "scale-not-folded" else 1.0 / np.sqrt(head_dim)
    wq_select, wk_select, zero_k = _selection_maps(d, head_dim)
    wv_lifted = jnp.asarray(np.stack([np.stack([np.concatenate([w["wv"][i][rows[g]], zero_k, zero_k], axis=1)
                                                for g in range(c.kv_heads)]) for i in range(layers)]))
    err = np.zeros((layers, heads))
    mapping = np.zeros((layers, heads))
    logit_bound = np.zeros((layers, heads))
    worst_position = np.zeros((layers, heads), int)
    log_eta = np.zeros((layers, heads))
    sizes = []
    for name in list(TASKS)[:n_prompts]:
        demos, query = TASKS[name]
        segments = [demos[i] for i in rng.permutation(len(demos))] + [query]
        ids, segment = model.encode_segments(segments)
        n = ids.shape[0]
        demo_idx = np.flatnonzero(segment < len(demos))
        query_idx = np.flatnonzero(segment == len(demos))
        sizes.append({"task": name, "tokens": int(n), "N_demo_tokens": int(demo_idx.size),
                      "query_positions": int(query_idx.size)})
        xs, outs = (states[chosen] for states in _prompt_states(model, ids))
        positions = np.arange(n)
        ref = np.stack([reference.llama_head_attention(xs[i], w["wq"][i], w["wk"][i], w["wv"][i], heads=heads,
                                                       kv_heads=c.kv_heads, base=c.rope_base) for i in range(layers)])
        queries = np.empty((layers, heads, n, head_dim))
        keys = np.empty((layers, c.kv_heads, n, head_dim))
        value_scale = np.empty((layers, heads))
        for i in range(layers):
            x = xs[i]
            for g in range(c.kv_heads):
                keys[i, g] = x @ w["wk"][i][rows[g]].T
            for h in range(heads):
                true_rows = rows[h // group]
                value_scale[i, h] = np.abs(x @ w["wv"][i][true_rows].T).max()
                mapping[i, h] = max(mapping[i, h], np.abs(outs[i, h] - ref[i, h]).max() / value_scale[i, h])
                queries[i, h] = x @ w["wq"][i][rows[h]].T
                q_norm = np.linalg.norm(queries[i, h], axis=1).max()
                k_norm = np.linalg.norm(x @ w["wk"][i][true_rows].T, axis=1).max() / np.sqrt(head_dim)
                logit_bound[i, h] = max(logit_bound[i, h], q_norm * k_norm)
        # lifted tokens [x ; R(p) W^K_g x / sqrt(d_head) ; R(p) W^Q_h x] of every head, grouped by the group it reads
        keys = _rotate(keys, positions, c.rope_base, mutant) * scale
        queries = _rotate(queries, positions, c.rope_base, None if mutant == "keys-unrotated" else mutant)
        shape = (layers, c.kv_heads, group, n)
        z = np.concatenate([np.broadcast_to(xs[:, None, None], (*shape, d)),
                            np.broadcast_to(keys[:, :, None], (*shape, head_dim)), queries[:, heads_of_group]], axis=-1)
        zd = jnp.asarray(z[..., demo_idx, :])
        for t in query_idx:
            dec = _kd_every_head(wq_select, wk_select, wv_lifted, zd, z[..., query_idx[0]:t + 1, :], z[..., t:t + 1, :])
            got = np.empty((layers, heads, head_dim))
            got[:, heads_of_group] = np.asarray(dec.w0_out if mutant == "drop-context" else dec.output)[..., 0, :]
            e = np.abs(got - ref[:, :, t]).max(axis=-1) / value_scale
            worse = e >= err
            err[worse], worst_position[worse] = e[worse], t
            step = np.empty((layers, heads))
            step[:, heads_of_group] = np.asarray(dec.log_eta)[..., 0]
            log_eta += step / (query_idx.size * n_prompts)
    tolerance = real_attention_tolerance(logit_bound.max())
    both = np.maximum(err, mapping)
    worst_layer, worst_head = np.unravel_index(np.argmax(both), both.shape)
    max_rel = float(err.max())
    violated = bool(both.max() > tolerance) or not np.all(np.isfinite(both))
    figures = {
        "layers": chosen, "heads_per_layer": heads, "query_heads": layers * heads, "max_rel_error": max_rel,
        "max_mapping_rel_error": float(mapping.max()), "worst_layer": chosen[worst_layer], "worst_head": int(worst_head),
        "per_layer_max_rel_error": err.max(axis=1).tolist(), "per_layer_worst_head": err.argmax(axis=1).tolist(),
        "per_head_rel_error": err.tolist(), "per_head_mapping_rel_error": mapping.tolist(),
        "per_head_max_logit_bound": logit_bound.tolist(), "per_head_mean_log_eta": log_eta.tolist(),
        "prompts": sizes, "model_file": str(model.path),
    }
    return CheckResult(
        id=ctx.check_id, kind="theorem", status="violated" if violated else "holds",
        cases=int(sum(s["query_positions"] for s in sizes)) * layers * heads, worst=float(both.max()),
        worst_label="max rel error (vs max|v_j|)", tolerance=tolerance,
        tolerance_reason=("64*eps64*(1 + max|q||k|): round-off of the logits relative to max|v_j|, capped at 1e-10; "
                          "docs/statements.md#real-models 3.1 and 'Real models'"),
        figures=figures, seed=seed, mutant=mutant,
        counterexample=({"layer": chosen[worst_layer], "head": int(worst_head),
                         "position": int(worst_position[worst_layer, worst_head]),
                         "rel_error": float(err[worst_layer, worst_head]),
                         "mapping_rel_error": float(mapping[worst_layer, worst_head])} if violated else None),
        summary=(f"{layers * heads} heads of SmolLM2-135M on {len(sizes)} ICL prompt(s): max rel error {max_rel:.2e} "
                 f"(layer {chosen[worst_layer]}, head {worst_head}; forward vs reference {mapping.max():.2e}), "
                 f"tolerance {tolerance:.1e}"))


def _domain_states(model, name, text):
    """The float64 hidden states of one domain's text (computed once per model and process)."""
    kept = _model_cache(model).setdefault("domains", {})
    if name not in kept:
        kept[name] = np.asarray(model.forward(model.encode(text), "float64").attn_inputs)
    return kept[name]


def domain_samples(model: smollm2.SmolLM2, n_tokens: int, rng: np.random.Generator):
    """``{domain: (hidden states (L, n, d), positions (n,))}`` at ``n_tokens`` seeded positions of each domain's text."""
    states = {name: _domain_states(model, name, "\n".join(sentences)) for name, sentences in DOMAINS.items()}
    n_tokens = min(n_tokens, *(xs.shape[1] for xs in states.values()))  # at most the smallest domain's tokens
    samples = {}
    for name, xs in states.items():
        positions = np.sort(rng.choice(xs.shape[1], n_tokens, replace=False))
        samples[name] = (xs[:, positions], positions)
    return samples


def _teachers(model, layer):
    """``(teachers (heads, d_head, d), ||teacher||_op (heads,))`` of one layer (kept per model and process).

    ``||W^O_h W^V_g x|| = ||R_h W^V_g x||`` with ``W^O_h = Q_h R_h`` (orthonormal ``Q_h``): the teacher of head
    ``h`` is the ``(d_head, d)`` map ``R_h W^V_g``, ``g`` the group it reads.
    """
    kept = _model_cache(model).setdefault("teachers", {})
    if layer not in kept:
        c = model.config
        head_dim, group = c.head_dim, c.heads // c.kv_heads
        wo, wv = (np.asarray(model.arrays[k][layer], np.float64) for k in ("wo", "wv"))
        teachers = np.empty((c.heads, head_dim, c.hidden))
        for h in range(c.heads):
            r = np.linalg.qr(wo[:, h * head_dim:(h + 1) * head_dim], mode="r")
            teachers[h] = r @ wv[(h // group) * head_dim:(h // group + 1) * head_dim]
        kept[layer] = teachers, np.array([np.linalg.norm(t, 2) for t in teachers])
    return kept[layer]


def _embedding_norm2(select, values_map, tokens, n):
    """``||ΔW||_HS^2`` and its condition for ``ΔW = W̄(tokens[n:]) - W̄(tokens[:n])`` with ``W^K = select``,
    ``W^V = values_map`` and ``2 eta = 1`` (:func:`iclkd_jax.distilled_weight_difference`, :func:`iclkd_jax.hs_norm`)."""
    weights = ik.AttentionWeights(select, select, values_map)
    hs = ik.hs_norm(ik.distilled_weight_difference(weights, tokens[:n], tokens[n:], eta=0.5))
    return hs.value, hs.condition


@functools.partial(jax.jit, static_argnums=3)
def _norms_every_group(select, values_maps, tokens, n):
    """:func:`_embedding_norm2` for every key/value group, map of the group and domain pair of one layer at once
    (the library's functions under ``jax.vmap``): ``values_maps (G_kv, maps, rows, D)``, ``tokens (G_kv, pairs,
    2n, D)``; returns values and conditions ``(G_kv, maps, pairs)``."""
    per_pair = jax.vmap(_embedding_norm2, in_axes=(None, None, 0, None))
    per_map = jax.vmap(per_pair, in_axes=(None, 0, None, None))
    return jax.vmap(per_map, in_axes=(None, 0, 0, None))(select, values_maps, tokens, n)


def check_41(model: smollm2.SmolLM2, ctx: RunContext, *, layers=None) -> CheckResult:
    n_tokens, mutant, seed = ctx.profile.real_tokens, ctx.mutant, ctx.seed
    c = model.config
    chosen = _layer_list(model, layers)
    rng = numpy_rng(ctx.key)
    samples = domain_samples(model, n_tokens, rng)
    names = list(samples)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    layers, heads, d, head_dim, group = len(chosen), c.heads, c.hidden, c.head_dim, c.heads // c.kv_heads
    observed, bounds = np.zeros((layers, heads, len(pairs))), np.zeros((layers, heads, len(pairs)))
    crosscheck = np.zeros((layers, heads, len(pairs)))
    cond = np.zeros((layers, heads, len(pairs)))
    max_log_kernel = 0.0
    n = next(iter(samples.values()))[0].shape[1]
    select = jnp.asarray(np.concatenate([np.zeros((head_dim, d)), np.eye(head_dim)], axis=1))
    identity_maps = jnp.asarray(np.broadcast_to(np.concatenate([np.eye(d), np.zeros((d, head_dim))], axis=1),
                                                (c.kv_heads, 1, d, d + head_dim)))    # W^V = [I 0], one per group
    coef = np.concatenate([-np.full(n, 1.0 / n), np.full(n, 1.0 / n)])
    positions = [np.concatenate([samples[a][1], samples[b][1]]) for a, b in pairs]
    for layer, model_layer in enumerate(chosen):
        wk = np.asarray(model.arrays["wk"][model_layer], np.float64)
        wk = [wk[g * head_dim:(g + 1) * head_dim] / np.sqrt(head_dim) for g in range(c.kv_heads)]
        teachers, op_norms = _teachers(model, model_layer)
        x = [np.concatenate([samples[a][0][model_layer], samples[b][0][model_layer]]) for a, b in pairs]
        # keys R(p) W^K_g x / sqrt(d_head) of every group and pair: (G_kv, pairs, 2n, d_head), one rotation per pair
        keys = np.stack([_rotate(np.stack([x[p] @ wk[g].T for g in range(c.kv_heads)]), positions[p], c.rope_base)
                         for p in range(len(pairs))], axis=1)
        max_log_kernel = max(max_log_kernel, float(np.max(np.sum(keys * keys, axis=-1))))
        tokens = np.concatenate([np.broadcast_to(np.stack(x), (c.kv_heads, len(pairs), 2 * n, d)), keys], axis=-1)
        # MMD^2: mean-embedding distance of x ⊗ phi(R(p) W^K x) (W^V = [I 0]), or a mutant's kernel: (G_kv, pairs)
        if mutant in ("positions-ignored", "rbf-kernel-mmd"):
            mmd2, mmd_cond = np.empty((c.kv_heads, len(pairs))), np.ones((c.kv_heads, len(pairs)))
            for p, (a, b) in enumerate(pairs):
                xa, xb = jnp.asarray(samples[a][0][model_layer]), jnp.asarray(samples[b][0][model_layer])
                for g in range(c.kv_heads):
                    kernel = (ik.product_kernel(jnp.asarray(wk[g])) if mutant == "positions-ignored"
                              else ik.rbf_kernel(bandwidth=ik.median_bandwidth(samples[a][0][model_layer],
                                                                               samples[b][0][model_layer])))
                    mmd2[g, p] = float(ik.mmd2(xa, xb, kernel))
        else:
            # the wrong-kv-group-kernel mutant: the keys of group (g + 1) % G_kv in group g's kernel
            kernel_tokens = np.roll(tokens, -1, axis=0) if mutant == "wrong-kv-group-kernel" else tokens
            mmd2, mmd_cond = (np.asarray(v)[:, 0] for v in _norms_every_group(
                select, identity_maps, jnp.asarray(kernel_tokens), n))
        # ||ΔW||_HS^2 of each head's teacher [R_h W^V_g 0], the heads grouped by the group they read: (G_kv, group, pairs)
        maps = np.concatenate([teachers, np.zeros((heads, head_dim, head_dim))], axis=-1)
        hs2, hs_cond = (np.asarray(v).reshape(heads, len(pairs)) for v in _norms_every_group(
            select, jnp.asarray(maps.reshape(c.kv_heads, group, head_dim, d + head_dim)), jnp.asarray(tokens), n))
        for p, (a, b) in enumerate(pairs):
            (xa, pa), (xb, pb) = samples[a], samples[b]
            for g in range(c.kv_heads):
                ref_mmd2, _ = reference.position_product_mmd2(xa[model_layer], pa, xb[model_layer], pb, wk[g],
                                                              c.rope_base)
                for h in range(g * group, (g + 1) * group):
                    ref = reference.log_hs_norm2(coef, x[p] @ teachers[h].T, keys[g, p], 0.0)
                    ref_hs2 = float(ref.sign * np.exp(ref.log_abs))
                    # every mutant changes the MMD under test: the reference sees it as well as the inequality
                    crosscheck[layer, h, p] = max(abs(hs2[h, p] - ref_hs2) / ref_hs2,
                                                  abs(mmd2[g, p] - ref_mmd2) / ref_mmd2)
                    cond[layer, h, p] = hs_cond[h, p] + mmd_cond[g, p]
                    bound = op_norms[h] * np.sqrt(max(mmd2[g, p], 0.0))                   # 2 eta = 1
                    observed[layer, h, p], bounds[layer, h, p] = np.sqrt(max(hs2[h, p], 0.0)), bound
    per_pair_tol = 64 * EPS64 * cond * (1.0 + max_log_kernel)
    status, tolerance, ratio = bound_ratio_status(observed, bounds, crosscheck, per_pair_tol)
    tightness = 1.0 / ratio
    worst = np.unravel_index(np.argmax(ratio), ratio.shape)
    figures = {
        "layers": chosen, "heads_per_layer": heads, "pairs": [f"{a}|{b}" for a, b in pairs],
        "tokens_per_domain": int(n_tokens), "max_ratio": float(ratio.max()),
        "worst_layer": chosen[worst[0]], "worst_head": int(worst[1]), "worst_pair": f"{pairs[worst[2]][0]}|{pairs[worst[2]][1]}",
        "per_layer_max_ratio": ratio.max(axis=(1, 2)).tolist(),
        "per_layer_min_tightness": tightness.min(axis=(1, 2)).tolist(),
        "per_layer_median_tightness": np.median(tightness.reshape(layers, -1), axis=1).tolist(),
        "per_head_ratio": ratio.max(axis=2).tolist(), "max_crosscheck_rel_error": float(crosscheck.max()),
        "condition_max": float(cond.max()), "max_log_kernel": max_log_kernel, "two_eta": 1.0,
    }
    return CheckResult(
        id=ctx.check_id, kind="theorem", status=status, cases=layers * heads * len(pairs),
        worst=float(ratio.max()), worst_label="max ‖ΔW‖/(2η‖W^O_h W^V_g‖ MMD_k)", tolerance=1.0 + tolerance,
        tolerance_reason=("ratio <= 1 + 64*eps64*(cond_HS + cond_MMD)*(1 + max k.k) per head and pair "
                          "(round-off of two conditioned quadratic forms); docs/statements.md#real-models 4.1, 'Real models'"),
        tightness=float(tightness.min()), figures=figures, seed=seed, mutant=mutant,
        counterexample=({"layer": chosen[worst[0]], "head": int(worst[1]), "pair": figures["worst_pair"],
                         "ratio": float(ratio[worst])} if status == "violated" else None),
        summary=(f"{layers * heads} heads x {len(pairs)} domain pairs, {n_tokens} tokens each: max ratio "
                 f"{ratio.max():.3g}, tightness {tightness.min():.3g}..{tightness.max():.3g} "
                 f"(cross-check vs NumPy {crosscheck.max():.1e})"))

