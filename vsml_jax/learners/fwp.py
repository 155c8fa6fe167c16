"""Fast weight programmer (FWP) with the delta rule.

Schmidhuber (1992), "Learning to control fast-weight memories: an alternative to
dynamic recurrent networks"; in the modern delta-rule form of Schlag, Irie &
Schmidhuber (ICML 2021), "Linear transformers are secretly fast weight programmers".

A slow net (the meta-parameters) reads, at step ``t``, the token
``s_t = concat[x_t, x_{t-1}, feedback.error, feedback.label]`` (the current input and
the previous example together with its feedback; ``x_{t-1}`` is kept in the state,
since the feedback refers to it) and emits a key ``k``, a value ``v``, a query ``q``
and a write strength ``beta = sigmoid(.)``. The fast weight matrix
``W_fast [value_size, key_size]`` (zero at the start of each episode) is programmed
by the delta rule and then read with the query::

    k, q = norm(k), norm(q)                     # 'softmax' or 'l2' normalisation
    W_fast <- W_fast + beta (v - W_fast k) k^T  # write
    logits = W_out (W_fast q) + b_out           # read + linear projection

The slow net is linear (as the projections of a linear-transformer layer) or an MLP
with ``slow_hidden`` tanh layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from vsml_jax.learners.base import Feedback, Learner, PyTree, TaskSpec

_NORMS = ("softmax", "l2")


def normalize_key(k: jax.Array, kind: str) -> jax.Array:
    """Normalise a key/query vector: ``softmax`` (sums to one) or ``l2`` (unit norm)."""
    if kind == "softmax":
        return jax.nn.softmax(k, axis=-1)
    return k / jnp.sqrt(jnp.sum(k * k, axis=-1, keepdims=True) + 1e-6)


def delta_rule_write(fast, key, value, beta):
    """``W + beta (v - W k) k^T``: replace the value stored under ``key`` by ``value``."""
    return fast + beta * jnp.outer(value - fast @ key, key)


class _SlowNet(nn.Module):
    key_size: int
    value_size: int
    hidden: Sequence[int]

    @nn.compact
    def __call__(self, token):
        h = token
        for i, width in enumerate(self.hidden):
            h = jnp.tanh(nn.Dense(width, name=f"hidden_{i}")(h))
        k = nn.Dense(self.key_size, name="key")(h)
        v = nn.Dense(self.value_size, name="value")(h)
        q = nn.Dense(self.key_size, name="query")(h)
        beta = jax.nn.sigmoid(nn.Dense(1, name="beta")(h)[0])
        return k, v, q, beta


class _FWP(nn.Module):
    key_size: int
    value_size: int
    hidden: Sequence[int]
    num_classes: int
    key_norm: str

    @nn.compact
    def __call__(self, fast, token):
        k, v, q, beta = _SlowNet(self.key_size, self.value_size, self.hidden, name="slow")(token)
        fast = delta_rule_write(fast, normalize_key(k, self.key_norm), v, beta)
        read = fast @ normalize_key(q, self.key_norm)
        return fast, nn.Dense(self.num_classes, name="out")(read)


class FWPState(NamedTuple):
    fast: jax.Array  # [value_size, key_size]
    prev_x: jax.Array  # [D]


def fwp(
    key_size: int = 64,
    value_size: int = 64,
    slow_hidden: Sequence[int] = (),
    key_norm: str = "l2",
) -> Learner:
    """Delta-rule fast weight programmer.

    Args:
      key_size, value_size: shape of the fast weight matrix ``[value_size, key_size]``.
      slow_hidden: tanh hidden layers of the slow net (``()``: linear projections).
      key_norm: ``'softmax'`` or ``'l2'`` normalisation of keys and queries.
    """
    if key_norm not in _NORMS:
        raise ValueError(f"key_norm must be one of {_NORMS}, got {key_norm!r}")
    slow_hidden = tuple(int(h) for h in slow_hidden)

    def net(task: TaskSpec) -> _FWP:
        return _FWP(key_size, value_size, slow_hidden, task.num_classes, key_norm)

    def meta_init(key: jax.Array, task: TaskSpec) -> PyTree:
        token = jnp.zeros((2 * task.input_dim + 2 * task.num_classes,), jnp.float32)
        fast = jnp.zeros((value_size, key_size), jnp.float32)
        return net(task).init(key, fast, token)["params"]

    def init(meta_params: PyTree, task: TaskSpec, key: jax.Array) -> FWPState:
        del meta_params, key
        return FWPState(
            fast=jnp.zeros((value_size, key_size), jnp.float32),
            prev_x=jnp.zeros((task.input_dim,), jnp.float32),
        )

    def step(meta_params: PyTree, state: FWPState, x: jax.Array, feedback: Feedback):
        chex.assert_shape(x, state.prev_x.shape)
        task = TaskSpec(input_dim=x.shape[-1], num_classes=feedback.label.shape[-1])
        token = jnp.concatenate([x, state.prev_x, feedback.error, feedback.label])
        fast, logits = net(task).apply({"params": meta_params}, state.fast, token)
        return FWPState(fast=fast, prev_x=x.astype(state.prev_x.dtype)), logits

    # meta_init is jitted: un-jitted Flax initialisation dispatches (and compiles) op by op.
    return Learner(name="fwp", meta_init=jax.jit(meta_init, static_argnums=1), init=init, step=step)
