"""Online k-nearest neighbours (k-NN): the other strong, parameter-free online classifier.

Not in the VSML paper; like :mod:`~vsml_jax.learners.ncm` it is here as the simple
baseline a meta-learned algorithm has to beat. It keeps a fixed-size memory of past
examples (a ring buffer of the last ``memory`` inputs and labels; an example is
stored when its label arrives as the next step's feedback) and predicts by a vote of
the ``k`` stored examples nearest ``x`` in squared Euclidean distance.

Logits: ``logits_c = votes_c + 0.5 * (k - r_c) / k`` for a class with votes, where
``r_c`` (0 .. k-1) is the distance rank of that class's nearest voter, and 0 for a
class with no votes. The vote count decides (the tie-break term is below 1/2); among
classes with equal counts the one whose nearest voter is closer wins (distance ties
go to the older slot, as ``lax.top_k`` orders equal values by index). While fewer
than ``k`` examples are stored, all of them vote. With an empty memory (the first
step) every logit is 0: no class is preferred (the argmax is then class 0, as for
any all-equal logits, and the loss is ``log C``). These logits are a vote, not a
calibrated probability: judge k-NN by its accuracy, not its cross-entropy.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from vsml_jax.learners.base import Feedback, Learner, TaskSpec


class KNNState(NamedTuple):
    xs: jax.Array  # [M, D] stored inputs (ring buffer)
    labels: jax.Array  # [M] int32 stored labels; -1 = empty slot
    count: jax.Array  # [] int32: examples stored so far; the next slot is count % M
    prev_x: jax.Array  # [D] the previous input, stored once its label arrives


def knn(k: int = 5, memory: int = 2000, name: str = "knn") -> Learner:
    """Online k-NN over a ring buffer of the last ``memory`` labelled examples.

    ``k`` (default 5, scikit-learn's default) is the number of voting neighbours;
    ``memory`` (default 2000, every example of a 2000-step meta-test episode) the
    buffer size. No meta-parameters; the state is ``O(memory * input_dim)``.
    """
    if not 1 <= k <= memory:
        raise ValueError(f"knn needs 1 <= k <= memory, got k={k}, memory={memory}")

    def meta_init(key, task: TaskSpec):
        return {}

    def init(meta_params, task: TaskSpec, key):
        del meta_params, key
        D = task.input_dim
        return KNNState(
            xs=jnp.zeros((memory, D)),
            labels=jnp.full((memory,), -1, jnp.int32),
            count=jnp.zeros((), jnp.int32),
            prev_x=jnp.zeros((D,)),
        )

    def step(meta_params, state: KNNState, x, feedback: Feedback):
        C = feedback.label.shape[-1]
        chex.assert_shape(x, state.prev_x.shape)
        # store the previous example (its one-hot label is all zeros at t = 0: nothing)
        has_label = jnp.sum(feedback.label) > 0
        slot = state.count % memory
        label = jnp.where(has_label, jnp.argmax(feedback.label).astype(jnp.int32), -1)
        xs = state.xs.at[slot].set(jnp.where(has_label, state.prev_x, state.xs[slot]))
        labels = state.labels.at[slot].set(jnp.where(has_label, label, state.labels[slot]))
        count = state.count + has_label.astype(jnp.int32)

        # the k nearest stored examples (empty slots last), nearest first
        dist = jnp.sum((xs - x[None, :]) ** 2, axis=-1)
        filled = labels >= 0
        neg_dist = jnp.where(filled, -dist, -jnp.inf)
        _, idx = jax.lax.top_k(neg_dist, k)
        chex.assert_shape(idx, (k,))
        votes = jax.nn.one_hot(labels[idx], C, dtype=x.dtype)  # [k, C]; zeros if empty
        counts = votes.sum(0)
        # rank of each class's nearest voter; k for a class with no voter
        ranks = jnp.arange(k, dtype=x.dtype)[:, None]
        nearest = jnp.min(jnp.where(votes > 0, ranks, k), axis=0)
        logits = counts + 0.5 * (k - nearest) / k
        return KNNState(xs, labels, count, x), logits

    return Learner(name=name, meta_init=meta_init, init=init, step=step)


def one_nn(memory: int = 2000) -> Learner:
    """Online 1-nearest neighbour: :func:`knn` with ``k = 1`` (registered as ``1nn``)."""
    return knn(k=1, memory=memory, name="1nn")
