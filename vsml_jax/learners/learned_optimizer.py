"""Learned optimiser: a coordinate-wise LSTM that updates an MLP online.

Andrychowicz et al. (NeurIPS 2016), "Learning to learn by gradient descent by
gradient descent". One small LSTM (``lstm_hidden`` units, ``num_layers`` layers) is
shared by every parameter of the MLP learner and has its own hidden state per
parameter (coordinate). At step ``t`` it reads the gradient of the previous
example's loss (the same gradient the SGD baseline uses, see
:mod:`vsml_jax.learners.sgd`), preprocessed as in the paper's appendix with
``p = 10``::

    (log|g| / p, sign(g))   if |g| >= exp(-p)
    (-1, exp(p) g)          otherwise

and a linear head turns its output into the parameter update,
``theta <- theta + output_scale * head(h)``. The update (and the LSTM state) is
skipped at the first step of an episode, where there is no previous example. The
MLP's initial weights are drawn from the episode key; the LSTM and head weights are
the meta-parameters.

As in the paper, ``stop_inner_grad=True`` (default) treats the learner's gradients
as constants in the meta-gradient (no second derivatives); the meta-gradient still
flows through the updated weights into all later losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from vsml_jax.learners.base import Feedback, Learner, PyTree, TaskSpec
from vsml_jax.learners.sgd import (
    MLP,
    has_feedback,
    init_mlp_params,
    previous_example_grad,
    select_tree,
)


def preprocess_gradients(grads: jax.Array, p: float = 10.0) -> jax.Array:
    """Andrychowicz et al.'s log/sign gradient preprocessing: ``[...] -> [..., 2]``."""
    threshold = jnp.exp(-p)
    magnitude = jnp.abs(grads)
    big = magnitude >= threshold
    log_part = jnp.log(jnp.maximum(magnitude, threshold)) / p
    first = jnp.where(big, log_part, -1.0)
    second = jnp.where(big, jnp.sign(grads), jnp.exp(p) * grads)
    return jnp.stack([first, second], axis=-1)


class _CoordinateLSTM(nn.Module):
    """A stack of LSTM cells applied independently to each coordinate ``[P, features]``."""

    hidden: int
    num_layers: int

    @nn.compact
    def __call__(self, carries, inputs):
        new_carries = []
        h = inputs
        for i in range(self.num_layers):
            carry, h = nn.OptimizedLSTMCell(self.hidden, name=f"lstm_{i}")(carries[i], h)
            new_carries.append(carry)
        return tuple(new_carries), nn.Dense(1, name="head")(h)[..., 0]


class LearnedOptimizerState(NamedTuple):
    params: PyTree  # the MLP learner's weights
    lstm: tuple  # per layer (c, h), each [num_params, lstm_hidden]
    prev_x: jax.Array  # [D]


def learned_optimizer(
    hidden: Sequence[int] = (),
    lstm_hidden: int = 20,
    num_layers: int = 2,
    output_scale: float = 0.1,
    preprocess_p: float = 10.0,
    stop_inner_grad: bool = True,
) -> Learner:
    """Coordinate-wise LSTM optimiser (Andrychowicz et al. 2016) of an MLP.

    Args:
      hidden: hidden widths of the optimised MLP (``()``: linear classifier). The
        per-coordinate LSTM state costs ``2 * num_layers * lstm_hidden`` floats per MLP
        parameter, so keep the MLP small when back-propagating through long episodes.
      lstm_hidden: LSTM width (20 in the paper).
      num_layers: number of stacked LSTM layers (2 in the paper).
      output_scale: multiplies the LSTM head's output to give the update (0.1 in the paper).
      preprocess_p: ``p`` of the gradient preprocessing.
      stop_inner_grad: drop second derivatives through the learner's gradients.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    hidden = tuple(int(h) for h in hidden)
    net = _CoordinateLSTM(hidden=lstm_hidden, num_layers=num_layers)

    def zero_carries(num_coords: int):
        z = jnp.zeros((num_coords, lstm_hidden), jnp.float32)
        return tuple((z, z) for _ in range(num_layers))

    def meta_init(key: jax.Array, task: TaskSpec) -> PyTree:
        del task  # the LSTM is shared by all coordinates: its size is task-independent
        return net.init(key, zero_carries(1), jnp.zeros((1, 2), jnp.float32))["params"]

    def init(meta_params: PyTree, task: TaskSpec, key: jax.Array) -> LearnedOptimizerState:
        del meta_params
        params = init_mlp_params(key, task, hidden)
        num_coords = ravel_pytree(params)[0].size
        return LearnedOptimizerState(
            params, zero_carries(num_coords), jnp.zeros((task.input_dim,), jnp.float32)
        )

    def step(meta_params, state: LearnedOptimizerState, x: jax.Array, feedback: Feedback):
        chex.assert_shape(x, state.prev_x.shape)
        mlp = MLP(hidden=hidden, num_classes=feedback.label.shape[-1])
        apply = lambda p, inp: mlp.apply({"params": p}, inp)
        grads = previous_example_grad(apply, state.params, state.prev_x, feedback)
        if stop_inner_grad:
            grads = jax.lax.stop_gradient(grads)
        flat_grads, _ = ravel_pytree(grads)
        flat_params, unravel = ravel_pytree(state.params)
        inputs = preprocess_gradients(flat_grads, preprocess_p)
        lstm, out = net.apply({"params": meta_params}, state.lstm, inputs)
        new_params = unravel(flat_params + output_scale * out)
        learn = has_feedback(feedback)
        params = select_tree(learn, new_params, state.params)
        lstm = select_tree(learn, lstm, state.lstm)
        logits = apply(params, x)
        return LearnedOptimizerState(params, lstm, x.astype(state.prev_x.dtype)), logits

    # meta_init is jitted: un-jitted Flax initialisation dispatches (and compiles) op by op.
    return Learner(
        name="learned_optimizer",
        meta_init=jax.jit(meta_init, static_argnums=1),
        init=init,
        step=step,
    )
