"""Softmax attention and its knowledge-distillation decomposition (docs/statements.md#thm-3-1, Theorem 3.1).

With keys ``k_j = W^K x_j``, values ``v_j = W^V x_j`` and query ``q = W^Q x'``,
there is no hidden ``1/sqrt(d_k)``: a temperature is absorbed into ``W^K``::

    Attn(x') = sum_j v_j exp(k_j . q) / D',     D' = sum_{j in D ∪ Q} exp(k_j . q).

Every sum of exponentials is a log-sum-exp (shifted by the largest logit), so logits
of +-1e3 give finite, exact results in float64.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from iclkd_jax import _validation as V
from iclkd_jax._compile import counted_jit
from iclkd_jax.operators import RepresenterOperator


class AttentionWeights(NamedTuple):
    """The maps of one attention head (a pytree).

    Attributes:
      wq: ``W^Q``, shape ``(d_k, d)``.
      wk: ``W^K``, shape ``(d_k, d)``.
      wv: ``W^V``, shape ``(d_v, d)``: the frozen teacher ``f_T(x) = W^V x``.
    """

    wq: jax.Array
    wk: jax.Array
    wv: jax.Array

    @property
    def token_dim(self) -> int:
        return self.wk.shape[1]


class KDDecomposition(NamedTuple):
    """Theorem 3.1 for each query row (all fields have a leading query axis ``q``).

    Attributes:
      w0_out: ``W_0 phi(q)`` = sum_{i<=N} v_i exp(k_i.q) / D', the demonstrations' part, ``(q, d_v)``.
      dw_out: ``ΔW phi(q)`` = sum_{j<=M} v'_j exp(k'_j.q) / D', the query context's part, ``(q, d_v)``.
      log_partition: ``log D'`` over demonstrations and context, ``(q,)``.
      log_eta: ``log(N / (2 D'))``, the learning-rate proxy of the lemma, ``(q,)``.
      log_eta_context: ``log(M / (2 D'))`` (``-inf`` when M = 0), ``(q,)``.
      attention_entropy: entropy (nats) of the attention distribution over all ``N + M`` keys, ``(q,)``.
    """

    w0_out: jax.Array
    dw_out: jax.Array
    log_partition: jax.Array
    log_eta: jax.Array
    log_eta_context: jax.Array
    attention_entropy: jax.Array

    @property
    def output(self) -> jax.Array:
        """The attention output ``(W_0 + ΔW) phi(q)``."""
        return self.w0_out + self.dw_out


def validate_weights(weights: AttentionWeights, *, name: str = "weights") -> AttentionWeights:
    """Checks the shapes ``(d_k, d), (d_k, d), (d_v, d)``, one dtype, finite entries."""
    if not isinstance(weights, AttentionWeights):
        if isinstance(weights, tuple) and len(weights) == 3:
            weights = AttentionWeights(*weights)
        else:
            raise ValueError(f"{name} must be AttentionWeights(wq, wk, wv), got {type(weights).__name__}")
    # min_rows=1: d_k = 0 or d_v = 0 is an empty map (the logits would silently be all 0)
    wq = V.as_float_array(weights.wq, f"{name}.wq", ndim=2, min_rows=1)
    wk = V.as_float_array(weights.wk, f"{name}.wk", ndim=2, min_rows=1)
    wv = V.as_float_array(weights.wv, f"{name}.wv", ndim=2, min_rows=1)
    if wq.shape != wk.shape:
        raise ValueError(f"{name}.wq and {name}.wk must both be (d_k, d), got {tuple(wq.shape)} and {tuple(wk.shape)}")
    if wv.shape[1] != wk.shape[1]:
        raise ValueError(f"{name}.wv must be (d_v, d) with d = {wk.shape[1]} (from wk {tuple(wk.shape)}), got {tuple(wv.shape)}")
    V.check_same_dtype(**{f"{name}.wq": wq, f"{name}.wk": wk, f"{name}.wv": wv})
    return AttentionWeights(wq, wk, wv)


def validate_tokens(weights: AttentionWeights, tokens: ArrayLike, name: str = "tokens", *, min_rows: int = 1) -> jax.Array:
    """Checks that ``tokens`` is ``(n, d)`` with ``d`` the token width of ``weights``, ``n >= min_rows``, same dtype."""
    tokens = V.as_float_array(tokens, name, ndim=2, min_rows=min_rows)
    if tokens.shape[1] != weights.token_dim:
        raise ValueError(
            f"{name} must be (n, d) with d = {weights.token_dim} (from weights.wk {tuple(weights.wk.shape)}), "
            f"got {tuple(tokens.shape)}")
    V.check_same_dtype(**{name: tokens, "weights.wk": weights.wk})
    return tokens


def _entropy(logits: jax.Array, log_partition: jax.Array) -> jax.Array:
    log_probs = logits - log_partition[:, None]
    return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)


@counted_jit
def _softmax_attention(weights, tokens, queries):
    keys = tokens @ weights.wk.T
    values = tokens @ weights.wv.T
    q = queries @ weights.wq.T
    logits = q @ keys.T
    return jax.nn.softmax(logits, axis=-1) @ values


def softmax_attention(weights: AttentionWeights, tokens: ArrayLike, queries: ArrayLike) -> jax.Array:
    """Single-head softmax attention of ``queries (q, d)`` over ``tokens (n, d)``.

    ``Attn(x') = sum_j W^V x_j softmax_j((W^K x_j) . (W^Q x'))`` (docs/statements.md#thm-3-1,
    Theorem 3.1), no ``1/sqrt(d_k)``; the softmax is max-shifted.

    Returns:
      ``(q, d_v)`` in the inputs' dtype.
    """
    weights = validate_weights(weights)
    tokens = validate_tokens(weights, tokens, "tokens", min_rows=1)
    queries = validate_tokens(weights, queries, "queries", min_rows=1)
    return _softmax_attention(weights, tokens, queries)


@counted_jit
def _kd_decomposition(weights, demos, context, queries):
    dtype = demos.dtype
    q = queries @ weights.wq.T
    demo_logits = q @ (demos @ weights.wk.T).T                      # (q, N)
    context_logits = q @ (context @ weights.wk.T).T                 # (q, M)
    logits = jnp.concatenate([demo_logits, context_logits], axis=-1)
    log_partition = jax.nn.logsumexp(logits, axis=-1)
    demo_weights = jnp.exp(demo_logits - log_partition[:, None])
    context_weights = jnp.exp(context_logits - log_partition[:, None])
    w0_out = demo_weights @ (demos @ weights.wv.T)
    dw_out = context_weights @ (context @ weights.wv.T)
    n_demos, n_context = demos.shape[0], context.shape[0]
    log_half = jnp.log(jnp.asarray(0.5, dtype))
    log_eta = jnp.log(jnp.asarray(n_demos, dtype)) + log_half - log_partition
    if n_context:
        log_eta_context = jnp.log(jnp.asarray(n_context, dtype)) + log_half - log_partition
    else:
        log_eta_context = jnp.full_like(log_partition, -jnp.inf)
    return KDDecomposition(w0_out, dw_out, log_partition, log_eta, log_eta_context,
                           _entropy(logits, log_partition))


def kd_decomposition(weights: AttentionWeights, demos: ArrayLike, context: ArrayLike | None,
                     queries: ArrayLike) -> KDDecomposition:
    """Theorem 3.1(a)-(b) in exact kernel form, per query row.

    ``Attn(x') = W_0 phi(q) + ΔW phi(q)`` with
    ``W_0 = (1/D') sum_{i<=N} v_i ⊗ phi(k_i)`` (one KD step from 0 on the
    demonstrations with ``eta = N / (2D')``) and
    ``ΔW = (1/D') sum_{j<=M} v'_j ⊗ phi(k'_j)`` (one step on the context with
    ``eta_Q = M / (2D')``). Kernel form: ``<phi(k), phi(q)> = exp(k . q)``, so nothing
    infinite is materialised. ``log D'`` is a log-sum-exp over all ``N + M`` logits.

    Args:
      weights: :class:`AttentionWeights`.
      demos: demonstration tokens ``X_D``, ``(N, d)``, N >= 1.
      context: query-context tokens ``X_Q``, ``(M, d)``; M = 0 rows or ``None`` allowed.
      queries: the tokens ``x'`` whose outputs are computed, ``(q, d)``.

    Returns:
      :class:`KDDecomposition`.
    """
    weights = validate_weights(weights)
    demos = validate_tokens(weights, demos, "demos", min_rows=1)
    if context is None:
        context = jnp.zeros((0, weights.token_dim), demos.dtype)
    context = validate_tokens(weights, context, "context", min_rows=0)
    queries = validate_tokens(weights, queries, "queries", min_rows=1)
    return _kd_decomposition(weights, demos, context, queries)


def log_partition(weights: AttentionWeights, tokens: ArrayLike, queries: ArrayLike) -> jax.Array:
    """``log D' = logsumexp_j (W^K x_j) . (W^Q x')`` for each query row, ``(q,)`` (the lemma)."""
    return kd_decomposition(weights, tokens, None, queries).log_partition


def attention_operators(weights: AttentionWeights, demos: ArrayLike, context: ArrayLike | None,
                        query: ArrayLike) -> tuple[RepresenterOperator, RepresenterOperator]:
    """``(W_0, ΔW)`` of Theorem 3.1(a) for one query token ``x' (d,)`` as representer operators.

    ``W_0 = (1/D') sum_{i<=N} v_i ⊗ phi(k_i)``, ``ΔW = (1/D') sum_{j<=M} v'_j ⊗ phi(k'_j)``,
    ``log_scale = −log D'``. When M = 0, ``ΔW`` is the zero operator (one zero term).
    Applied to ``phi(W^Q x')`` (:func:`~iclkd_jax.operators.apply_operator`) they give
    :func:`kd_decomposition`'s ``w0_out`` and ``dw_out``.
    """
    weights = validate_weights(weights)
    query = V.as_float_array(query, "query", ndim=1, last_dim=weights.token_dim)
    V.check_same_dtype(query=query, **{"weights.wk": weights.wk})
    demos = validate_tokens(weights, demos, "demos", min_rows=1)
    if context is None:
        context = jnp.zeros((0, weights.token_dim), demos.dtype)
    context = validate_tokens(weights, context, "context", min_rows=0)
    # the compiled decomposition gives log D' (inputs validated once, above)
    log_scale = -_kd_decomposition(weights, demos, context, query[None, :]).log_partition[0]
    w0 = RepresenterOperator(jnp.ones((demos.shape[0],), demos.dtype), demos @ weights.wv.T,
                             demos @ weights.wk.T, log_scale)
    if context.shape[0] == 0:
        zero = jnp.zeros((1, weights.wv.shape[0]), demos.dtype)
        return w0, RepresenterOperator(jnp.zeros((1,), demos.dtype), zero,
                                       jnp.zeros((1, weights.wk.shape[0]), demos.dtype), log_scale)
    dw = RepresenterOperator(jnp.ones((context.shape[0],), demos.dtype), context @ weights.wv.T,
                             context @ weights.wk.T, log_scale)
    return w0, dw
