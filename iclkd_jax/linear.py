"""Linear attention and its gradient-descent readings (docs/statements.md#thm-linear, Theorem 3.1, special case).

With ``phi`` = identity (no softmax, no normalisation) the algebra of Theorem 3.1
is exact in finite dimension::

    LinAttn(x') = sum_j v_j (k_j . q) = (W_0 + ΔW) q,
    W_0 = sum_{i<=N} v_i k_i^T,   ΔW = sum_{j<=M} v'_j k'_j^T          (Dai et al., 2022)

and ``W_0 = 0 − eta grad L_D(0)`` with ``eta = N/2`` for the KD loss of Theorem 3.1(b).

The construction of von Oswald et al. (2023): tokens ``e_i = (x_i, y_i)`` in
``R^{d_x + d_y}``, one linear self-attention (LSA) layer

    e' = e + P sum_i (W^V e_i) ((W^K e_i) . (W^Q e)),

with ``W^K = W^Q = [[I_{d_x}, 0], [0, 0]]`` (keys and queries see ``x`` only),
``W^V = [[0, 0], [W_init, −I_{d_y}]]`` (so ``W^V e_i = (0, W_init x_i − y_i)``, the
residual at the initial weights) and ``P = (eta/N) I``. The query token is
``e = (x_q, −W_init x_q)``; after the layer its y-coordinates are

    −W_init x_q + (eta/N) sum_i (W_init x_i − y_i) x_i^T x_q = −(W_init − eta grad L(W_init)) x_q,

i.e. minus the prediction after one gradient-descent step of size ``eta`` on the
in-context least squares ``L(W) = 1/(2N) sum_i ||W x_i − y_i||^2``, whose gradient is
``(1/N) sum_i (W x_i − y_i) x_i^T``. The prediction is read as ``−y`` (von Oswald's
sign convention). The sum runs over the N demonstration tokens only: the query
token is not its own key (its value would be ``(0, 2 W_init x_q)``, not a residual).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from iclkd_jax import _validation as V
from iclkd_jax._compile import counted_jit
from iclkd_jax.attention import AttentionWeights, validate_tokens, validate_weights


class LSAWeights(NamedTuple):
    """One linear self-attention layer with a residual projection (a pytree).

    Attributes:
      wq, wk: ``(d_k, d)``; wv: ``(d_v, d)``; projection: ``P``, ``(d, d_v)``: the layer adds
        ``P sum_i (W^V e_i)((W^K e_i) . (W^Q e))`` to the token ``e``.
    """

    wq: jax.Array
    wk: jax.Array
    wv: jax.Array
    projection: jax.Array


@counted_jit
def _linear_attention(weights, tokens, queries):
    return ((queries @ weights.wq.T) @ (tokens @ weights.wk.T).T) @ (tokens @ weights.wv.T)


def linear_attention(weights: AttentionWeights, tokens: ArrayLike, queries: ArrayLike) -> jax.Array:
    """Linear attention ``sum_j v_j (k_j . q)`` for each query row (no softmax, no normalisation).

    Args:
      weights: :class:`AttentionWeights` ``(W^Q, W^K, W^V)``.
      tokens: ``(n, d)``, n >= 1.
      queries: ``(q, d)``.

    Returns:
      ``(q, d_v)`` in the inputs' dtype.
    """
    weights = validate_weights(weights)
    tokens = validate_tokens(weights, tokens, "tokens", min_rows=1)
    queries = validate_tokens(weights, queries, "queries", min_rows=1)
    return _linear_attention(weights, tokens, queries)


@counted_jit
def _outer_sum(weights, tokens):
    return (tokens @ weights.wv.T).T @ (tokens @ weights.wk.T)


def linear_dual_weights(weights: AttentionWeights, demos: ArrayLike,
                        context: ArrayLike | None) -> tuple[jax.Array, jax.Array]:
    """The dual form (Dai et al., 2022): ``W_0 = sum_i v_i k_i^T``, ``ΔW = sum_j v'_j k'_j^T``.

    Then ``linear_attention(weights, [demos; context], q) = (W_0 + ΔW) W^Q x'`` exactly.

    Args:
      weights: :class:`AttentionWeights`.
      demos: ``(N, d)``, N >= 1.
      context: ``(M, d)``; ``None`` or 0 rows give ``ΔW = 0``.

    Returns:
      ``(W_0, ΔW)``, each ``(d_v, d_k)``.
    """
    weights = validate_weights(weights)
    demos = validate_tokens(weights, demos, "demos", min_rows=1)
    w0 = _outer_sum(weights, demos)
    if context is None or jnp.shape(context)[0] == 0:
        if context is not None:
            validate_tokens(weights, context, "context", min_rows=0)
        return w0, jnp.zeros_like(w0)
    context = validate_tokens(weights, context, "context", min_rows=1)
    return w0, _outer_sum(weights, context)


def von_oswald_weights(x_dim: int, y_dim: int, *, learning_rate: float, n_demos: int,
                       w_init: ArrayLike | None = None, dtype=None) -> LSAWeights:
    """The LSA weights of von Oswald et al. (2023) for one GD step of size ``learning_rate``.

    ``W^K = W^Q = [[I, 0], [0, 0]]`` (``(d, d)``, d = x_dim + y_dim), ``W^V = [[0, 0], [W_init, −I]]``,
    ``P = (learning_rate / n_demos) I``; see the module docstring for the derivation.

    Args:
      x_dim, y_dim: input and target dimensions.
      learning_rate: the GD step ``eta > 0``.
      n_demos: N, the number of demonstrations the layer will see (the ``1/N`` of the loss).
      w_init: ``(y_dim, x_dim)`` initial weights of the GD step; zero by default.
      dtype: floating dtype (default: ``w_init``'s, else JAX's default float).

    Returns:
      :class:`LSAWeights`.
    """
    x_dim = V.positive_int(x_dim, "x_dim")
    y_dim = V.positive_int(y_dim, "y_dim")
    n_demos = V.positive_int(n_demos, "n_demos")
    V.positive_scalar(learning_rate, "learning_rate")
    if w_init is None:
        dtype = dtype or jnp.result_type(float)
        w_init = jnp.zeros((y_dim, x_dim), dtype)
    else:
        w_init = V.as_float_array(w_init, "w_init", ndim=2)
        if w_init.shape != (y_dim, x_dim):
            raise ValueError(f"w_init must be (y_dim, x_dim) = {(y_dim, x_dim)}, got {tuple(w_init.shape)}")
        dtype = dtype or w_init.dtype
        w_init = w_init.astype(dtype)
    d = x_dim + y_dim
    # the constant blocks are built in NumPy (no per-shape dispatch); only w_init may be a JAX value
    select_x = np.zeros((d, d))
    select_x[:x_dim, :x_dim] = np.eye(x_dim)
    value_map = np.zeros((d, d))
    value_map[x_dim:, x_dim:] = -np.eye(y_dim)
    if V.is_tracer(w_init):
        wv = jnp.asarray(value_map, dtype).at[x_dim:, :x_dim].set(w_init)
    else:
        value_map[x_dim:, :x_dim] = np.asarray(w_init, np.float64)
        wv = jax.device_put(value_map.astype(dtype))
    # device_put, not jnp.asarray: jnp.asarray of a NumPy array compiles a staging program per shape
    select_x = jax.device_put(select_x.astype(dtype))
    projection = jax.device_put((np.eye(d) * (learning_rate / n_demos)).astype(dtype))
    return LSAWeights(select_x, select_x, wv, projection)


def _validate_lsa(lsa: LSAWeights) -> LSAWeights:
    if not isinstance(lsa, LSAWeights):
        raise ValueError(f"lsa must be LSAWeights(wq, wk, wv, projection), got {type(lsa).__name__}")
    head = validate_weights(AttentionWeights(lsa.wq, lsa.wk, lsa.wv), name="lsa")
    projection = V.as_float_array(lsa.projection, "lsa.projection", ndim=2)
    if projection.shape != (head.token_dim, head.wv.shape[0]):
        raise ValueError(f"lsa.projection must be (d, d_v) = {(head.token_dim, head.wv.shape[0])}, "
                         f"got {tuple(projection.shape)}")
    V.check_same_dtype(**{"lsa.wk": head.wk, "lsa.projection": projection})
    return LSAWeights(*head, projection)


@counted_jit
def _lsa_layer(lsa, tokens, queries):
    update = _linear_attention(AttentionWeights(lsa.wq, lsa.wk, lsa.wv), tokens, queries)
    return queries + update @ lsa.projection.T


def lsa_layer(lsa: LSAWeights, tokens: ArrayLike, queries: ArrayLike) -> jax.Array:
    """One residual linear self-attention layer applied to query tokens.

    ``e' = e + P sum_i (W^V e_i) ((W^K e_i) . (W^Q e))`` for each row ``e`` of ``queries``,
    the sum over the rows ``e_i`` of ``tokens``.

    Returns:
      ``(q, d)``: the updated query tokens.
    """
    lsa = _validate_lsa(lsa)
    head = AttentionWeights(lsa.wq, lsa.wk, lsa.wv)
    tokens = validate_tokens(head, tokens, "tokens", min_rows=1)
    queries = validate_tokens(head, queries, "queries", min_rows=1)
    return _lsa_layer(lsa, tokens, queries)


def _validate_regression(xs, ys, name_x="xs", name_y="ys"):
    xs = V.as_float_array(xs, name_x, ndim=2, min_rows=1)
    ys = V.as_float_array(ys, name_y, ndim=2, min_rows=1)
    if ys.shape[0] != xs.shape[0]:
        raise ValueError(f"{name_x} {tuple(xs.shape)} and {name_y} {tuple(ys.shape)} must have the same number of rows")
    V.check_same_dtype(**{name_x: xs, name_y: ys})
    return xs, ys


def _validate_w_init(w_init, xs, ys):
    if w_init is None:
        return jnp.zeros((ys.shape[1], xs.shape[1]), xs.dtype)
    w_init = V.as_float_array(w_init, "w_init", ndim=2)
    if w_init.shape != (ys.shape[1], xs.shape[1]):
        raise ValueError(f"w_init must be (y_dim, x_dim) = {(ys.shape[1], xs.shape[1])}, got {tuple(w_init.shape)}")
    V.check_same_dtype(w_init=w_init, xs=xs)
    return w_init


@counted_jit
def _concat(first, second):
    return jnp.concatenate([first, second], axis=-1)


@counted_jit
def _query_tokens(x_query, w_init):
    return jnp.concatenate([x_query, -x_query @ w_init.T], axis=-1)


def lsa_tokens(xs: ArrayLike, ys: ArrayLike) -> jax.Array:
    """Demonstration tokens ``e_i = (x_i, y_i)``: ``(N, x_dim + y_dim)``."""
    xs, ys = _validate_regression(xs, ys)
    return _concat(xs, ys)


def lsa_query_tokens(x_query: ArrayLike, *, y_dim: int, w_init: ArrayLike | None = None) -> jax.Array:
    """Query tokens ``e = (x_q, −W_init x_q)``: ``(q, x_dim + y_dim)`` (zero y-part when ``w_init`` is None)."""
    x_query = V.as_float_array(x_query, "x_query", ndim=2, min_rows=1)
    y_dim = V.positive_int(y_dim, "y_dim")
    w_init = _validate_w_init(w_init, x_query, jnp.zeros((1, y_dim), x_query.dtype))
    return _query_tokens(x_query, w_init)


@counted_jit(static_argnums=1)
def _read_prediction(updated_queries, y_dim):
    return -updated_queries[:, -y_dim:]


def lsa_prediction(updated_queries: ArrayLike, *, y_dim: int) -> jax.Array:
    """The prediction read from updated query tokens: minus their last ``y_dim`` coordinates, ``(q, y_dim)``."""
    updated_queries = V.as_float_array(updated_queries, "updated_queries", ndim=2)
    y_dim = V.positive_int(y_dim, "y_dim")
    if y_dim >= updated_queries.shape[1]:
        raise ValueError(f"y_dim {y_dim} must be smaller than the token dimension of updated_queries "
                         f"{tuple(updated_queries.shape)}")
    return _read_prediction(updated_queries, y_dim)


@counted_jit
def _gd_step_prediction(xs, ys, x_query, learning_rate, w_init):
    gradient = (xs @ w_init.T - ys).T @ xs / xs.shape[0]
    return x_query @ (w_init - learning_rate * gradient).T


def gd_step_prediction(xs: ArrayLike, ys: ArrayLike, x_query: ArrayLike, *, learning_rate: float,
                       w_init: ArrayLike | None = None) -> jax.Array:
    """Prediction after one GD step on in-context least squares.

    ``L(W) = 1/(2N) sum_i ||W x_i − y_i||^2``, ``grad L(W) = (1/N) sum_i (W x_i − y_i) x_i^T``,
    ``W_1 = W_init − eta grad L(W_init)``; returns ``W_1 x_q`` for each row of ``x_query``.
    From ``W_init = 0``: ``(eta/N) sum_i y_i x_i^T x_q``.

    Args:
      xs: ``(N, x_dim)``; ys: ``(N, y_dim)``; x_query: ``(q, x_dim)``.
      learning_rate: ``eta > 0``.
      w_init: ``(y_dim, x_dim)``, zero by default.

    Returns:
      ``(q, y_dim)``.
    """
    xs, ys = _validate_regression(xs, ys)
    x_query = V.as_float_array(x_query, "x_query", ndim=2, min_rows=1, last_dim=xs.shape[1])
    V.check_same_dtype(xs=xs, x_query=x_query)
    V.positive_scalar(learning_rate, "learning_rate")
    w_init = _validate_w_init(w_init, xs, ys)
    return _gd_step_prediction(xs, ys, x_query, jnp.asarray(learning_rate, xs.dtype), w_init)
