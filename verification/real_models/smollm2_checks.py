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
    """``R(p) x`` by the library's rotary map (or a mutant layout)."""
    if mutant == "half-split-rope":
        half = x.shape[-1] // 2
        perm = np.stack([np.arange(half), np.arange(half) + half], axis=1).reshape(-1)   # (0,32,1,33,...)
        inverse = np.argsort(perm)
        return np.asarray(apply_rope(jnp.asarray(x[:, perm]), jnp.asarray(positions), base))[:, inverse]
    if mutant == "keys-unrotated":
        return np.asarray(x)
    return np.asarray(apply_rope(jnp.asarray(x), jnp.asarray(positions), base))


def _lifted(x, positions, wq_h, wk_g, wv_g, base, head_dim, mutant=None):
    """Lifted tokens ``[x ; R(p) W^K x / sqrt(d_head) ; R(p) W^Q x]`` and the selection maps (module docstring)."""
    d = x.shape[1]
    scale = 1.0 if mutant == "scale-not-folded" else 1.0 / np.sqrt(head_dim)
    keys = _rotate(x @ wk_g.T, positions, base, mutant) * scale
    queries = _rotate(x @ wq_h.T, positions, base, None if mutant == "keys-unrotated" else mutant)
    z = np.concatenate([x, keys, queries], axis=1)
    eye, zero_x, zero_k = np.eye(head_dim), np.zeros((head_dim, d)), np.zeros((head_dim, head_dim))
    weights = ik.AttentionWeights(jnp.asarray(np.concatenate([zero_x, zero_k, eye], axis=1)),
                                  jnp.asarray(np.concatenate([zero_x, eye, zero_k], axis=1)),
                                  jnp.asarray(np.concatenate([wv_g, zero_k, zero_k], axis=1)))
    return z, weights


def _heads(model, layer):
    a, c = model.arrays, model.config
    f64 = {k: np.asarray(a[k][layer], np.float64) for k in ("wq", "wk", "wv", "wo")}
    return f64, c.head_dim, c.heads // c.kv_heads


def _layer_list(model, layers):
    """All layers, or the given subset (the tests use subsets to stay within the CI budget; the CLI checks all)."""
    chosen = list(range(model.config.layers)) if layers is None else [int(i) for i in layers]
    if not chosen or min(chosen) < 0 or max(chosen) >= model.config.layers:
        raise ValueError(f"layers must be a non-empty subset of 0..{model.config.layers - 1}, got {layers}")
    return chosen


def check_31a(model: smollm2.SmolLM2, ctx: RunContext, *, layers=None) -> CheckResult:
    n_prompts, mutant, seed = ctx.profile.real_prompts, ctx.mutant, ctx.seed
    c = model.config
    rng = numpy_rng(ctx.key)
    chosen = _layer_list(model, layers)
    layers, heads = len(chosen), c.heads
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
        out = model.forward(ids, "float64")
        xs, outs = np.asarray(out.attn_inputs), np.asarray(out.head_outputs)
        positions = np.arange(n)
        for layer, model_layer in enumerate(chosen):
            w, head_dim, group = _heads(model, model_layer)
            x = xs[model_layer]
            ref = reference.llama_head_attention(x, w["wq"], w["wk"], w["wv"], heads=heads, kv_heads=c.kv_heads,
                                                 base=c.rope_base)
            for h in range(heads):
                g = h % c.kv_heads if mutant == "wrong-kv-group" else h // group
                rows_q, rows_kv = slice(h * head_dim, (h + 1) * head_dim), slice(g * head_dim, (g + 1) * head_dim)
                true_rows = slice((h // group) * head_dim, (h // group + 1) * head_dim)
                value_scale = np.abs(x @ w["wv"][true_rows].T).max()
                mapping[layer, h] = max(mapping[layer, h], np.abs(outs[model_layer, h] - ref[h]).max() / value_scale)
                q_norm = np.linalg.norm(x @ w["wq"][rows_q].T, axis=1).max()
                k_norm = np.linalg.norm(x @ w["wk"][true_rows].T, axis=1).max() / np.sqrt(head_dim)
                logit_bound[layer, h] = max(logit_bound[layer, h], q_norm * k_norm)
                z, weights = _lifted(x, positions, w["wq"][rows_q], w["wk"][rows_kv], w["wv"][rows_kv], c.rope_base,
                                     head_dim, mutant)
                zd = jnp.asarray(z[demo_idx])
                for t in query_idx:
                    context = z[query_idx[0]:t + 1]
                    dec = ik.kd_decomposition(weights, zd, jnp.asarray(context), jnp.asarray(z[t:t + 1]))
                    got = np.asarray(dec.w0_out if mutant == "drop-context" else dec.output)[0]
                    e = np.abs(got - ref[h, t]).max() / value_scale
                    if e >= err[layer, h]:
                        err[layer, h], worst_position[layer, h] = e, t
                    log_eta[layer, h] += float(dec.log_eta[0]) / (query_idx.size * n_prompts)
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


_DOMAIN_STATES: dict = {}


def _domain_states(model, name, text):
    """The float64 hidden states of one domain's text (computed once per model and process)."""
    key = (id(model), name)
    if key not in _DOMAIN_STATES:
        ids = model.encode(text)
        _DOMAIN_STATES[key] = np.asarray(model.forward(ids, "float64").attn_inputs)
    return _DOMAIN_STATES[key]


def domain_samples(model: smollm2.SmolLM2, n_tokens: int, rng: np.random.Generator):
    """``{domain: (hidden states (L, n, d), positions (n,))}`` at ``n_tokens`` seeded positions of each domain's text."""
    states = {name: _domain_states(model, name, "\n".join(sentences)) for name, sentences in DOMAINS.items()}
    n_tokens = min(n_tokens, *(xs.shape[1] for xs in states.values()))  # at most the smallest domain's tokens
    samples = {}
    for name, xs in states.items():
        positions = np.sort(rng.choice(xs.shape[1], n_tokens, replace=False))
        samples[name] = (xs[:, positions], positions)
    return samples


def check_41(model: smollm2.SmolLM2, ctx: RunContext, *, layers=None) -> CheckResult:
    n_tokens, mutant, seed = ctx.profile.real_tokens, ctx.mutant, ctx.seed
    c = model.config
    chosen = _layer_list(model, layers)
    rng = numpy_rng(ctx.key)
    samples = domain_samples(model, n_tokens, rng)
    names = list(samples)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    layers, heads, d = len(chosen), c.heads, c.hidden
    observed, bounds = np.zeros((layers, heads, len(pairs))), np.zeros((layers, heads, len(pairs)))
    crosscheck = np.zeros((layers, heads, len(pairs)))
    cond = np.zeros((layers, heads, len(pairs)))
    max_log_kernel = 0.0
    for layer, model_layer in enumerate(chosen):
        w, head_dim, group = _heads(model, model_layer)
        for g in range(c.kv_heads):
            rows = slice(g * head_dim, (g + 1) * head_dim)
            wk = w["wk"][rows] / np.sqrt(head_dim)
            kernel_rows = slice(((g + 1) % c.kv_heads) * head_dim, ((g + 1) % c.kv_heads + 1) * head_dim)
            wk_kernel = w["wk"][kernel_rows] / np.sqrt(head_dim) if mutant == "wrong-kv-group-kernel" else wk
            # ||W^O_h W^V_g x|| = ||R_h W^V_g x|| with W^O_h = Q_h R_h (orthonormal Q_h): (d_head, d) teachers
            teachers, op_norms = {}, {}
            for h in range(g * group, (g + 1) * group):
                r = np.linalg.qr(w["wo"][:, h * head_dim:(h + 1) * head_dim], mode="r")
                teachers[h] = r @ w["wv"][rows]
                op_norms[h] = np.linalg.norm(teachers[h], 2)
            for p, (a, b) in enumerate(pairs):
                (xa, pa), (xb, pb) = samples[a], samples[b]
                x = np.concatenate([xa[model_layer], xb[model_layer]])
                pos = np.concatenate([pa, pb])
                keys = _rotate(x @ wk.T, pos, c.rope_base)
                max_log_kernel = max(max_log_kernel, float(np.max(np.sum(keys * keys, axis=1))))
                z = np.concatenate([x, keys], axis=1)
                n = xa.shape[1]
                select = np.concatenate([np.zeros((head_dim, d)), np.eye(head_dim)], axis=1)

                def embedding_norm2(values_map, z=z, select=select, n=n):
                    weights = ik.AttentionWeights(jnp.asarray(select), jnp.asarray(select), jnp.asarray(values_map))
                    op = ik.distilled_weight_difference(weights, jnp.asarray(z[:n]), jnp.asarray(z[n:]), eta=0.5)
                    hs = ik.hs_norm(op)
                    return float(hs.value), float(hs.condition)

                # MMD^2: mean-embedding distance of x ⊗ phi(R(p) W^K x) (W^V = [I 0]), or a mutant's kernel
                if mutant == "positions-ignored":
                    mmd2 = float(ik.mmd2(jnp.asarray(xa[model_layer]), jnp.asarray(xb[model_layer]),
                                         ik.product_kernel(jnp.asarray(wk))))
                    mmd_cond = 1.0
                elif mutant == "rbf-kernel-mmd":
                    bandwidth = ik.median_bandwidth(xa[model_layer], xb[model_layer])
                    mmd2 = float(ik.mmd2(jnp.asarray(xa[model_layer]), jnp.asarray(xb[model_layer]),
                                         ik.rbf_kernel(bandwidth=bandwidth)))
                    mmd_cond = 1.0
                elif mutant == "wrong-kv-group-kernel":
                    kz = np.concatenate([x, _rotate(x @ wk_kernel.T, pos, c.rope_base)], axis=1)
                    mmd2, mmd_cond = embedding_norm2(np.concatenate([np.eye(d), np.zeros((d, head_dim))], axis=1), z=kz)
                else:
                    mmd2, mmd_cond = embedding_norm2(np.concatenate([np.eye(d), np.zeros((d, head_dim))], axis=1))
                ref_mmd2, _ = reference.position_product_mmd2(xa[model_layer], pa, xb[model_layer], pb, wk, c.rope_base)
                coef = np.concatenate([-np.full(n, 1.0 / n), np.full(n, 1.0 / n)])
                for h in range(g * group, (g + 1) * group):
                    teacher, op_norm = teachers[h], op_norms[h]
                    hs2, hs_cond = embedding_norm2(np.concatenate([teacher, np.zeros((head_dim, head_dim))], axis=1))
                    ref = reference.log_hs_norm2(coef, x @ teacher.T, keys, 0.0)
                    ref_hs2 = float(ref.sign * np.exp(ref.log_abs))
                    # every mutant changes the MMD under test: the reference sees it as well as the inequality
                    crosscheck[layer, h, p] = max(abs(hs2 - ref_hs2) / ref_hs2, abs(mmd2 - ref_mmd2) / ref_mmd2)
                    cond[layer, h, p] = hs_cond + mmd_cond
                    bound = op_norm * np.sqrt(max(mmd2, 0.0))                   # 2 eta = 1
                    observed[layer, h, p], bounds[layer, h, p] = np.sqrt(max(hs2, 0.0)), bound
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

