"""Meta RNN: an LSTM whose activations are the learning algorithm.

Hochreiter, Younger & Conwell (2001), "Learning to learn using gradient descent"
(ICANN); the black-box baseline "LSTM / Meta RNN" of the VSML paper (Kirsch &
Schmidhuber 2021). At every step the LSTM reads ``concat[x_t, feedback.error,
feedback.label]`` (the current input and the previous step's error and label) and a
linear head maps its hidden state to the logits of ``x_t``. All learning within an
episode happens in the LSTM state ``(c, h)``; the LSTM and head weights are the
meta-parameters. The initial state is zero.

With ``prev_input=True`` the LSTM also reads ``x_{t-1}``, the input the feedback refers
to (as the fast weight programmer does), so it need not carry ``x_{t-1}`` in its state
to pair it with its label.
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


def meta_rnn(hidden: int = 128, prev_input: bool = False) -> Learner:
    """Meta RNN learner (LSTM with ``hidden`` units + linear head); state is ``(c, h)``,
    with ``x_{t-1}`` too if ``prev_input``."""

    def cell(task: TaskSpec) -> _MetaRNNCell:
        return _MetaRNNCell(hidden=hidden, num_classes=task.num_classes)

    def zero_carry():
        z = jnp.zeros((hidden,), jnp.float32)
        return (z, z)

    def meta_init(key: jax.Array, task: TaskSpec) -> PyTree:
        width = (1 + prev_input) * task.input_dim + 2 * task.num_classes
        return cell(task).init(key, zero_carry(), jnp.zeros((width,), jnp.float32))["params"]

    def init(meta_params: PyTree, task: TaskSpec, key: jax.Array):
        del meta_params, key
        if prev_input:
            return zero_carry(), jnp.zeros((task.input_dim,), jnp.float32)
        return zero_carry()

    def step(meta_params: PyTree, state, x: jax.Array, feedback: Feedback):
        chex.assert_rank(x, 1)
        num_classes = feedback.label.shape[-1]
        task = TaskSpec(input_dim=x.shape[-1], num_classes=num_classes)
        carry, prev = state if prev_input else (state, None)
        parts = [x, prev] if prev_input else [x]
        inputs = jnp.concatenate([*parts, feedback.error, feedback.label])
        carry, logits = cell(task).apply({"params": meta_params}, carry, inputs)
        return ((carry, x.astype(jnp.float32)) if prev_input else carry), logits

    # meta_init is jitted: un-jitted Flax initialisation dispatches (and compiles) op by op.
    return Learner(
        name="meta_rnn", meta_init=jax.jit(meta_init, static_argnums=1), init=init, step=step
    )
