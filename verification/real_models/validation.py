"""Is the loaded real model the real model? Its forward pass against golden values of an independent implementation.

A verdict "Theorem 3.1(a) holds on SmolLM2" is about SmolLM2 only if the hidden states the
checks feed to the theorems are SmolLM2's. The theorems hold for any attention layer, so a
forward pass with a bug (SwiGLU's gate and up projections swapped, the final RMSNorm
dropped, a wrong rotary base, BERT's ``1/sqrt(d_k)`` dropped) would still give ``holds``.
Before its checks, each real model's forward pass is therefore compared with values that
Hugging Face transformers (torch, CPU) computed from the same weight files
(``golden/make_golden.py``; ``golden/smollm2.npz``, ``golden/minilm.npz``). A model that
does not match makes its real-model checks ``error`` (:func:`require_valid` raises
:class:`ForwardMismatch`, the check's wrapper reports it).

What is compared, per fixed prompt (a few tokens each):

* the token ids of the prompt (the tokenizer); the forward passes below run on the golden ids,
  so a tokenizer mismatch and a forward mismatch are reported apart;
* per-layer fingerprints of the hidden states ``x_t`` at every position ``t``:
  ``F(x_t) = (||x_t||, u_1 . x_t, u_2 . x_t, u_3 . x_t)`` with ``u_k`` the orthonormal DCT-II
  vectors ``u_k[i] = sqrt(2/d) cos(pi (i + 1/2) k / d)`` of :data:`STATE_FREQUENCIES`. For SmolLM2
  ``x`` is each of the 30 layers' attention inputs ``RMSNorm(h) g_attn`` (the checks' tokens); for
  MiniLM the states entering each of the 6 encoder layers and the encoder's output. The first
  layer whose fingerprint fails localises a bug;
* SmolLM2: the logits at a few token ids per prompt (the golden's argmax at every position, its top
  3 at the last) and ``logsumexp_v logits_v`` at every position (all 49152 logits enter it);
* MiniLM: the fingerprint of the sentence embedding (mean-pooled output, L2-normalised) with the
  eight :data:`EMBEDDING_FREQUENCIES`.

Error measure: a fingerprint's components are 1-Lipschitz in ``x_t`` (a norm and projections on
unit vectors), so ``e = max_{t,j} |F_j(x_t) - F_j(x*_t)| / ||x*_t|| <= max_t ||x_t - x*_t|| / ||x*_t||``,
the relative error of the state; the logits' ``e`` is ``max |l - l*| / max |l*|`` over the stored
logits and log-partitions (``x*``, ``l*``: golden).

Tolerance (an error analysis, first order in the unit round-off ``u``). Every floating-point
operation of a forward pass commits a relative error ``|delta| <= u``; to first order the computed
state differs from the exact one by ``sum_i J_i delta_i``, ``J_i`` the derivative of the state with
respect to operation ``i``'s result. Hence ``e = u A xi``: ``A`` is the amplification of the model on
that prompt up to that layer (it accumulates with depth: dot products of length up to 1536,
attention logits up to ``|q||k|``, the SwiGLU product, RMS normalisation of a residual stream with
large coordinates), ``xi = O(1)`` depends only on how an implementation orders its sums. ``A`` is a
property of the model and the prompt, not of the implementation, so the golden script measures it:
it runs the same independent implementation in float32 and in float64 and stores
``r32 = e(float32 vs float64) = u32 A xi32`` (the float64 run's own error is ``2^-29`` times smaller).
An implementation with unit round-off ``u`` differs from the float64 golden by
``u A (xi + xi_golden u64/u)``, so the tolerance is::

    tol = SAFETY * (u / u32) * envelope,    envelope = max(u32, max over prompts and over layers <= this one of r32)

The envelope is non-decreasing in depth (round-off accumulates) and takes the maximum over every
prompt, position and component, so ``xi32`` is a maximum of many terms, not small by chance.
:data:`SAFETY` = ``2 sqrt(K)`` with ``K`` = 1536, the longest dot product of either model (SmolLM2's
SwiGLU width, MiniLM's intermediate width): ``r32`` is a typical error (the rounding errors of a sum of
``K`` terms add like a random walk, ``~ sqrt(K) u``), while an implementation's error is bounded only
by the worst case of its sums (``K u`` each: Higham's ``gamma_K``), ``sqrt(K)`` times more; the factor
2 adds the golden's own error (for a float64 forward it weighs as much as ours). The two
implementations do differ by more than the typical error at places (JAX against torch, measured: up to
15 times ``r32`` at one layer of SmolLM2 on one prompt), so the typical error alone is no tolerance.
The validated forward is the one the checks use: SmolLM2's JAX forward in float64 (``u = 2^-53``; float32 is
supported with ``u = 2^-24``) and MiniLM's NumPy float64 encoder. The bugs above change a state by
``O(1)`` relative to its size; float64's tolerances are below ``1e-13``: docs/real-models.md gives the
measured margins.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import weakref
from pathlib import Path

import jax
import numpy as np

from verification.real_models import minilm

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
GOLDEN_FILES = {"smollm2": "smollm2.npz", "minilm": "minilm.npz"}
#: DCT-II frequencies of the per-layer fingerprints (with the norm: 4 numbers per position and layer)
STATE_FREQUENCIES = (3, 29, 113)
#: DCT-II frequencies of MiniLM's sentence-embedding fingerprint
EMBEDDING_FREQUENCIES = (1, 2, 3, 5, 8, 13, 21, 34)
#: the longest dot product of either model (SmolLM2's SwiGLU width, MiniLM's intermediate width)
LONGEST_DOT = 1536
#: the tolerance's factor over the measured round-off, ``2 sqrt(K)``: worst-case over typical rounding of a sum of
#: ``K`` terms, for the golden and for the validated forward (module docstring)
SAFETY = 2.0 * float(np.sqrt(LONGEST_DOT))
#: float32's unit round-off, the precision of the golden script's measurement ``r32``
U32 = float(np.finfo(np.float32).eps) / 2
REGENERATE = "python verification/real_models/golden/make_golden.py (needs torch and transformers)"


class ForwardMismatch(RuntimeError):
    """The model's forward pass (or tokenizer) disagrees with the golden values beyond the round-off tolerance.

    Attributes:
      validation: the :class:`Validation` with every comparison (its message is the exception's).
    """

    def __init__(self, validation: Validation):
        super().__init__(validation.message())
        self.validation = validation


def directions(dim: int, frequencies=STATE_FREQUENCIES) -> np.ndarray:
    """The orthonormal DCT-II vectors ``u_k[i] = sqrt(2/dim) cos(pi (i + 1/2) k / dim)``, ``(len(frequencies), dim)``."""
    i = np.arange(dim)
    return np.stack([np.sqrt(2.0 / dim) * np.cos(np.pi * (i + 0.5) * k / dim) for k in frequencies])


def fingerprint(x, frequencies=STATE_FREQUENCIES) -> np.ndarray:
    """``(||x_t||, u_k . x_t ...)`` of every row: ``(..., d) -> (..., 1 + len(frequencies))``, float64."""
    x = np.asarray(x, np.float64)
    return np.concatenate([np.linalg.norm(x, axis=-1, keepdims=True), x @ directions(x.shape[-1], frequencies).T],
                          axis=-1)


def fingerprint_error(x, golden: np.ndarray, frequencies=STATE_FREQUENCIES) -> float:
    """``max_{t,j} |F_j(x_t) - golden_j(t)| / golden_0(t)``: at most the largest relative error of a row of ``x``."""
    return float(np.max(np.abs(fingerprint(x, frequencies) - golden) / golden[..., :1]))


def logsumexp(logits) -> np.ndarray:
    """``log sum_v exp(l_v)`` over the last axis, float64, with the maximum factored out."""
    logits = np.asarray(logits, np.float64)
    top = logits.max(axis=-1)
    return top + np.log(np.exp(logits - top[..., None]).sum(axis=-1))


def load_golden(name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """``(metadata, arrays)`` of a model's golden file (``golden/<name>.npz``).

    Raises:
      ValueError: unknown model name.
      FileNotFoundError: the file is not installed (it is package data of ``verification.real_models``).
    """
    if name not in GOLDEN_FILES:
        raise ValueError(f"no golden values for model {name!r}; known: {', '.join(GOLDEN_FILES)}")
    path = GOLDEN_DIR / GOLDEN_FILES[name]
    if not path.is_file():
        raise FileNotFoundError(f"the golden forward values {path} are missing (package data of "
                                f"verification.real_models; regenerate with: {REGENERATE})")
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def state_tolerances(roundoff32: np.ndarray, unit_roundoff: float) -> np.ndarray:
    """``SAFETY (u / u32) envelope`` per layer from the measured float32 round-off ``r32`` ``(prompts, layers)``."""
    envelope = np.maximum.accumulate(np.max(np.asarray(roundoff32, np.float64), axis=0))
    return SAFETY * (unit_roundoff / U32) * np.maximum(envelope, U32)


def output_tolerance(roundoff32: np.ndarray, unit_roundoff: float) -> float:
    """``SAFETY (u / u32) max(u32, max r32)`` for an output measured once per prompt (logits, embedding)."""
    return float(SAFETY * (unit_roundoff / U32) * max(float(np.max(roundoff32)), U32))


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One compared quantity: ``error <= tolerance`` must hold (NaN fails)."""

    prompt: str
    quantity: str
    error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(self.error <= self.tolerance)

    @property
    def ratio(self) -> float:
        """``error / tolerance`` (the margin is its inverse); a count mismatch against tolerance 0 is ``inf``."""
        if self.tolerance > 0:
            return float(self.error / self.tolerance)
        return 0.0 if self.error == 0 else float("inf")

    def describe(self) -> str:
        return f"prompt {self.prompt!r}, {self.quantity}: error {self.error:.3g} vs tolerance {self.tolerance:.3g}"


@dataclasses.dataclass(frozen=True)
class Validation:
    """The comparisons of one model's forward pass with its golden values.

    Attributes:
      model: ``"smollm2"`` or ``"minilm"``.
      dtype: the dtype of the validated forward pass.
      comparisons: every compared quantity, prompt by prompt, layers in order.
      source: how the golden values were made (library versions, dtype).
    """

    model: str
    dtype: str
    comparisons: tuple[Comparison, ...]
    source: str

    @property
    def failures(self) -> list[Comparison]:
        return [c for c in self.comparisons if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def worst(self) -> Comparison:
        """The comparison with the largest ``error / tolerance`` (NaN first)."""
        return max(self.comparisons, key=lambda c: np.inf if np.isnan(c.error) else c.ratio)

    def message(self) -> str:
        """One paragraph: OK with the worst ratio, or the first failure of every prompt and the worst overall."""
        if self.ok:
            return (f"{self.model} forward ({self.dtype}) matches the golden values of {self.source}: "
                    f"{len(self.comparisons)} comparisons, worst error/tolerance {self.worst.ratio:.3g} "
                    f"({self.worst.describe()})")
        firsts = {}
        for c in self.failures:
            firsts.setdefault(c.prompt, c)
        lines = "; ".join(f"first mismatch at {c.describe()}" for c in firsts.values())
        return (f"{self.model} forward ({self.dtype}) does not match the golden values of {self.source} "
                f"({len(self.failures)} of {len(self.comparisons)} comparisons fail): {lines}; worst: "
                f"{self.worst.describe()}. The real-model checks are not run on a forward pass that is not the "
                f"model's.")

    def figures(self) -> dict:
        """JSON-friendly summary for a check's report (the worst comparison and its margin)."""
        worst = self.worst
        return {"model": self.model, "dtype": self.dtype, "comparisons": len(self.comparisons),
                "failures": len(self.failures), "worst_ratio": worst.ratio, "worst_prompt": worst.prompt,
                "worst_quantity": worst.quantity, "worst_error": worst.error, "worst_tolerance": worst.tolerance,
                "golden_source": self.source}


def _token_comparison(text: str, ids: np.ndarray, golden: np.ndarray) -> Comparison:
    """The tokenizer: the number of positions whose id differs (a length difference counts fully), tolerance 0."""
    n = min(ids.shape[0], golden.shape[0])
    differing = int(np.sum(ids[:n] != golden[:n])) + abs(ids.shape[0] - golden.shape[0])
    return Comparison(text, f"token ids (ours {ids.tolist()}, golden {golden.tolist()})" if differing
                      else "token ids", float(differing), 0.0)


def _layer_comparisons(text: str, states: np.ndarray, golden: np.ndarray, tolerances: np.ndarray,
                       names: list[str]) -> list[Comparison]:
    if states.shape[0] != golden.shape[0]:
        return [Comparison(text, f"number of layers (ours {states.shape[0]}, golden {golden.shape[0]})",
                           float(abs(states.shape[0] - golden.shape[0])), 0.0)]
    return [Comparison(text, names[i], fingerprint_error(states[i], golden[i]), float(tolerances[i]))
            for i in range(states.shape[0])]


def validate_smollm2(model, dtype: str = "float64") -> Validation:
    """SmolLM2's tokenizer, per-layer attention inputs and logits against ``golden/smollm2.npz`` (module docstring).

    Args:
      model: a :class:`verification.real_models.smollm2.SmolLM2` (its ``encode`` and ``forward`` are what is validated).
      dtype: the forward pass's dtype, ``float64`` (what the checks use) or ``float32``.
    """
    meta, arrays = load_golden("smollm2")
    u = float(np.finfo(np.dtype(dtype)).eps) / 2
    state_tol = state_tolerances(arrays["roundoff32_states"], u)
    logit_tol = output_tolerance(arrays["roundoff32_logits"], u)
    names = [f"layer {layer} attention inputs" for layer in range(state_tol.shape[0])]
    comparisons = []
    for p, text in enumerate(meta["prompts"]):
        ids = arrays[f"ids_{p}"]
        comparisons.append(_token_comparison(text, np.asarray(model.encode(text)), ids))
        with jax.enable_x64(True) if np.dtype(dtype) == np.float64 else contextlib.nullcontext():
            out = model.forward(ids, dtype)
            states, logits = np.asarray(out.attn_inputs, np.float64), np.asarray(out.logits, np.float64)
        comparisons += _layer_comparisons(text, states, arrays[f"states_{p}"], state_tol, names)
        gold_logits, gold_lse = arrays[f"logits_{p}"], arrays[f"logsumexp_{p}"]
        scale = max(np.abs(gold_logits).max(), np.abs(gold_lse).max())
        error = max(np.abs(logits[:, arrays[f"logit_ids_{p}"]] - gold_logits).max(),
                    np.abs(logsumexp(logits) - gold_lse).max()) / scale
        comparisons.append(Comparison(text, "logits (selected ids and log-partition)", float(error), logit_tol))
    return Validation("smollm2", np.dtype(dtype).name, tuple(comparisons), meta["source"])


def validate_minilm(model) -> Validation:
    """MiniLM's tokenizer, per-layer states and sentence embedding against ``golden/minilm.npz`` (module docstring).

    Args:
      model: a :class:`verification.real_models.minilm.MiniLM` (its ``encode`` and NumPy float64 encoder are validated).
    """
    meta, arrays = load_golden("minilm")
    u = float(np.finfo(np.float64).eps) / 2
    state_tol = state_tolerances(arrays["roundoff32_states"], u)
    embedding_tol = output_tolerance(arrays["roundoff32_embedding"], u)
    names = [f"states entering layer {layer}" for layer in range(state_tol.shape[0] - 1)] + ["encoder output"]
    comparisons = []
    for p, text in enumerate(meta["prompts"]):
        ids, type_ids = arrays[f"ids_{p}"], arrays[f"type_ids_{p}"]
        comparisons.append(_token_comparison(text, model.encode([text]).ids, ids))
        layer_states, final = model._encoder(ids[None], type_ids[None], np.ones((1, ids.shape[0])))
        states = np.concatenate([layer_states[:, 0], final], axis=0)
        comparisons += _layer_comparisons(text, states, arrays[f"states_{p}"], state_tol, names)
        pooled = final[0].mean(axis=0)
        error = fingerprint_error(pooled / np.linalg.norm(pooled), arrays[f"embedding_{p}"], EMBEDDING_FREQUENCIES)
        comparisons.append(Comparison(text, "sentence embedding", error, embedding_tol))
    return Validation("minilm", "float64", tuple(comparisons), meta["source"])


def validate(model) -> Validation:
    """:func:`validate_minilm` or :func:`validate_smollm2` (float64, the checks' dtype) by the model's type."""
    return validate_minilm(model) if isinstance(model, minilm.MiniLM) else validate_smollm2(model)


_VALIDATED: dict[int, tuple[weakref.ref, Validation]] = {}


def require_valid(model) -> Validation:
    """:func:`validate` once per model object and process; raises :class:`ForwardMismatch` naming the mismatch.

    Raises:
      ForwardMismatch: a comparison failed (the message names the prompt, the quantity or layer, the error
        and the tolerance).
      FileNotFoundError: the golden values are not installed.
    """
    cached = _VALIDATED.get(id(model))
    if cached is None or cached[0]() is not model:
        cached = (weakref.ref(model), validate(model))
        _VALIDATED[id(model)] = cached
    validation = cached[1]
    if not validation.ok:
        raise ForwardMismatch(validation)
    return validation


__all__ = ["Comparison", "ForwardMismatch", "Validation", "directions", "fingerprint", "fingerprint_error",
           "load_golden", "output_tolerance", "require_valid", "state_tolerances", "validate", "validate_minilm",
           "validate_smollm2"]
