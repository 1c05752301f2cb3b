"""Synthetic in-context tasks: linear regression and its +-1 classification variant.

A prompt draws a task vector ``w ~ N(0, I_d)`` (fresh per prompt, or one of a finite
pool of training tasks), ``N`` demonstrations ``x_i`` from a bounded family (default:
the unit sphere, on which the softmax kernel ``exp(q . k)`` is a Gaussian RBF kernel in
``x``, so one softmax layer can do kernel regression), labels
``y_i = <w, x_i> + noise * eps_i`` (classification: ``sign(<w, x_i>)``), and queries
``x'`` whose target is the noiseless ``<w, x'>`` (classification: ``sign``). The
query's label is masked in its token (:func:`experiments.models.make_tokens`).
Every draw takes an explicit ``jax.random`` key.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from iclkd_jax.distributions import Distribution, sphere, uniform_ball

DTYPE = jnp.float32


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """The in-context task.

    Attributes:
      x_dim: d of the inputs.
      n_demos: N demonstrations per prompt.
      noise: std of the demonstration label noise (regression).
      task: ``"regression"`` or ``"classification"`` (labels ``sign(<w, x>)``, squared loss on +-1).
      family: ``"sphere"`` or ``"ball"`` (bounded, radius ``radius``).
      radius: the family's radius.
    """

    x_dim: int = 3
    n_demos: int = 24
    noise: float = 0.1
    task: str = "regression"
    family: str = "sphere"
    radius: float = 1.0

    def __post_init__(self):
        if self.task not in ("regression", "classification"):
            raise ValueError(f"task must be regression or classification, got {self.task!r}")
        if self.family not in ("sphere", "ball"):
            raise ValueError(f"family must be sphere or ball, got {self.family!r}")

    def target(self) -> Distribution:
        """The target distribution D of the inputs."""
        make = sphere if self.family == "sphere" else uniform_ball
        return make(self.x_dim, radius=self.radius)


class Prompts(NamedTuple):
    """A batch of prompts: ``x_demos (P, N, d)``, ``y_demos (P, N)``, ``x_query (P, Q, d)``, ``y_query (P, Q)``, ``w (P, d)``."""

    x_demos: jax.Array
    y_demos: jax.Array
    x_query: jax.Array
    y_query: jax.Array
    w: jax.Array


def label(cfg: TaskConfig, w: jax.Array, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """Labels of rows ``x (..., n, d)`` under tasks ``w (..., d)``; noise only when ``key`` is given."""
    f = jnp.einsum("...nd,...d->...n", x, w)
    if cfg.task == "classification":
        return jnp.where(f >= 0, 1.0, -1.0).astype(x.dtype)
    if key is not None and cfg.noise > 0:
        f = f + cfg.noise * jax.random.normal(key, f.shape, x.dtype)
    return f


def sample_prompts(key: jax.Array, cfg: TaskConfig, n_prompts: int, *, demo_dist: Distribution | None = None,
                   query_dist: Distribution | None = None, n_queries: int = 1, n_demos: int | None = None,
                   task_pool: jax.Array | None = None) -> Prompts:
    """``n_prompts`` prompts; demonstrations from ``demo_dist`` and queries from ``query_dist`` (default D).

    Args:
      task_pool: optional ``(K, d)`` finite set of task vectors to draw ``w`` from.
    """
    demo_dist = demo_dist or cfg.target()
    query_dist = query_dist or cfg.target()
    n_demos = n_demos or cfg.n_demos
    kw, kd, kq, kn = jax.random.split(key, 4)
    if task_pool is None:
        w = jax.random.normal(kw, (n_prompts, cfg.x_dim), DTYPE)
    else:
        w = task_pool[jax.random.randint(kw, (n_prompts,), 0, task_pool.shape[0])]
    x_demos = jax.vmap(lambda k: demo_dist.sample(k, n_demos, DTYPE))(jax.random.split(kd, n_prompts))
    x_query = jax.vmap(lambda k: query_dist.sample(k, n_queries, DTYPE))(jax.random.split(kq, n_prompts))
    return Prompts(x_demos, label(cfg, w, x_demos, kn), x_query, label(cfg, w, x_query), w)


def flatten_queries(prompts: Prompts) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Repeat each prompt's demonstrations per query: ``(P*Q, N, d), (P*Q, N), (P*Q, d), (P*Q,)``."""
    p, q = prompts.x_query.shape[:2]
    xd = jnp.repeat(prompts.x_demos, q, axis=0)
    yd = jnp.repeat(prompts.y_demos, q, axis=0)
    return xd, yd, prompts.x_query.reshape(p * q, -1), prompts.y_query.reshape(p * q)
