"""Meta RNN: an LSTM whose activations are the learning algorithm.

Hochreiter, Younger & Conwell (2001), "Learning to learn using gradient descent"
(ICANN); the black-box baseline "LSTM / Meta RNN" of the VSML paper (Kirsch &
Schmidhuber 2021). At every step the LSTM reads ``concat[x_t, feedback.error,
feedback.label]`` (the current input and the previous step's error and label) and a
linear head maps its hidden state to the logits of ``x_t``. All learning within an
episode happens in the LSTM state ``(c, h)``; the LSTM and head weights are the
meta-parameters. The initial state is zero.
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from vsml_jax.learners.base import Feedback, Learner, PyTree, TaskSpec


class _MetaRNNCell(nn.Module):
    hidden: int
    num_classes: int

    @nn.compact
    def __call__(self, carry, inputs):
        carry, h = nn.OptimizedLSTMCell(self.hidden, name="lstm")(carry, inputs)
        return carry, nn.Dense(self.num_classes, name="head")(h)


def meta_rnn(hidden: int = 128) -> Learner:
    """Meta RNN learner (LSTM with ``hidden`` units + linear head); state is ``(c, h)``."""

    def cell(task: TaskSpec) -> _MetaRNNCell:
        return _MetaRNNCell(hidden=hidden, num_classes=task.num_classes)

    def zero_carry():
        z = jnp.zeros((hidden,), jnp.float32)
        return (z, z)

    def meta_init(key: jax.Array, task: TaskSpec) -> PyTree:
        inputs = jnp.zeros((task.input_dim + 2 * task.num_classes,), jnp.float32)
        return cell(task).init(key, zero_carry(), inputs)["params"]

    def init(meta_params: PyTree, task: TaskSpec, key: jax.Array):
        del meta_params, task, key
        return zero_carry()

    def step(meta_params: PyTree, state, x: jax.Array, feedback: Feedback):
        chex.assert_rank(x, 1)
        num_classes = feedback.label.shape[-1]
        task = TaskSpec(input_dim=x.shape[-1], num_classes=num_classes)
        inputs = jnp.concatenate([x, feedback.error, feedback.label])
        state, logits = cell(task).apply({"params": meta_params}, state, inputs)
        return state, logits

    # meta_init is jitted: un-jitted Flax initialisation dispatches (and compiles) op by op.
    return Learner(
        name="meta_rnn", meta_init=jax.jit(meta_init, static_argnums=1), init=init, step=step
    )
