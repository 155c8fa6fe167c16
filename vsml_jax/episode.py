"""Run one online-classification episode of any learner.

At every step ``t`` the learner sees ``x_t`` and the feedback of step ``t - 1``,
predicts logits for ``x_t``, and is then scored on ``y_t``: the online
(prequential) loss. The whole episode is one ``lax.scan``; population and batch
axes come from ``vmap`` outside.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from vsml_jax.learners.base import Feedback, Learner, PyTree, TaskSpec


class EpisodeResult(NamedTuple):
    """Per-step outputs of an episode: logits ``[T, C]``, loss ``[T]``, accuracy ``[T]``."""

    logits: jax.Array
    loss: jax.Array
    accuracy: jax.Array


def run_episode(
    learner: Learner,
    meta_params: PyTree,
    xs: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    num_classes: int,
) -> EpisodeResult:
    """Run ``learner`` online over ``xs`` ``[T, D]`` with integer ``labels`` ``[T]``."""
    return trace_episode(learner, meta_params, xs, labels, key, num_classes, lambda s: ())[0]


def trace_episode(
    learner: Learner,
    meta_params: PyTree,
    xs: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    num_classes: int,
    observe: Callable[[PyTree], PyTree],
) -> tuple[EpisodeResult, PyTree]:
    """:func:`run_episode` that also returns ``observe(state)`` after every step (stacked
    over ``T``), e.g. the weights a learner holds, for introspection."""
    chex.assert_rank(xs, 2)
    chex.assert_rank(labels, 1)
    chex.assert_equal_shape_prefix((xs, labels), 1)
    task = TaskSpec(input_dim=xs.shape[-1], num_classes=num_classes)
    state = learner.init(meta_params, task, key)

    def body(carry, inputs):
        carry, (logits, loss, acc) = online_step(learner, meta_params, carry, *inputs)
        return carry, (logits, loss, acc, observe(carry[0]))

    init_carry = (state, Feedback.zeros(num_classes, xs.dtype))
    _, (logits, loss, acc, observed) = jax.lax.scan(body, init_carry, (xs, labels))
    return EpisodeResult(logits=logits, loss=loss, accuracy=acc), observed


def online_step(learner: Learner, meta_params, carry, x, y, num_classes: int | None = None):
    """One online step: the learner reads ``x`` and the feedback on its previous
    prediction, predicts, and is scored on ``y``.

    ``carry = (state, feedback)``; returns ``(state, feedback for the next step),
    (logits, loss, accuracy)``. ``num_classes`` defaults to the feedback's size.
    """
    state, feedback = carry
    num_classes = num_classes or feedback.error.shape[-1]
    state, logits = learner.step(meta_params, state, x, feedback)
    chex.assert_shape(logits, (num_classes,))
    onehot = jax.nn.one_hot(y, num_classes, dtype=logits.dtype)
    loss = optax.softmax_cross_entropy(logits, onehot)
    error = jax.nn.softmax(logits) - onehot  # d loss / d logits
    acc = (jnp.argmax(logits) == y).astype(jnp.float32)
    return (state, Feedback(error=error, label=onehot)), (logits, loss, acc)


def episode_loss(
    learner: Learner, meta_params, xs, labels, key, num_classes, weights=None
) -> jax.Array:
    """The meta-objective of one episode: its mean online cross-entropy, or with
    ``weights`` (``[T]``, static, e.g. only a few-shot episode's queries) its weighted mean."""
    loss = run_episode(learner, meta_params, xs, labels, key, num_classes).loss
    if weights is None:
        return loss.mean()
    w = jnp.asarray(weights, loss.dtype)
    chex.assert_equal_shape((w, loss))
    return (loss * w).sum() / w.sum()


def batch_episode_loss(
    learner: Learner,
    meta_params,
    xs: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    num_classes,
    weights=None,
) -> jax.Array:
    """Mean online cross-entropy over a batch of episodes ``xs [B, T, D]``, ``labels [B, T]``;
    ``key`` is split into one learner-init key per episode."""
    chex.assert_rank(xs, 3)
    chex.assert_rank(labels, 2)
    chex.assert_equal_shape_prefix((xs, labels), 2)
    keys = jax.random.split(key, xs.shape[0])
    losses = jax.vmap(
        lambda x, y, k: episode_loss(learner, meta_params, x, y, k, num_classes, weights)
    )(xs, labels, keys)
    return losses.mean()
