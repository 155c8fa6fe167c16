"""Backpropagation written as VSML dynamics: the algorithm the cloned cell implements.

Paper §4.1 ("learning algorithm cloning") teaches the shared VSML cell to implement
online gradient descent in its forward dynamics. This module is the target: the same
grid, the same messages and the same tick schedule as :mod:`vsml_jax.vsml.network`,
but each cell (a, b) holds an explicit weight ``w_ab`` and bias share ``beta_ab``.

**Scale convention (pinned by the tests).** VSML mean-reduces its messages, so one
tick of a layer with inputs ``x`` ``[A]`` (forward channel 0) and ``e`` ``[B]``
(backward channel 0) is

- update: ``w_ab <- w_ab - lr * tanh(x_a) * e_b`` and ``beta_ab <- beta_ab - lr * e_b``;
- forward: ``y_b = mean_a (tanh(x_a) w_ab + beta_ab) = (1/A) sum_a tanh(x_a) w_ab + b_b``
  with the bias ``b_b = mean_a beta_ab``;
- backward: ``e_a = mean_b e_b w_ab = (1/B) sum_b e_b w_ab``;

both messages from the updated weights. This is a dense layer
``y = tanh(x) W + b`` with ``W = w / A`` and the bias ``b`` trained by online SGD with
learning rates ``lr / A`` (``W``) and ``lr`` (``b``), whose backward message is ``A / B``
times ``dL/dtanh(x)``; the update ``-lr tanh(x_a) e_b`` is exactly
``-A * (lr / A) * dL/dW_ab``. With one micro-tick per sweep and the separate backward
pass of :func:`vsml_jax.vsml.network.network_step` (``backward_pass=True``,
``forward_sweep_feedback=False``), a step first delivers the previous error top-down
over the previous inputs (the weights change), then reads the new input bottom-up with
zero error (the weights stay): online backprop, where the layer below gets the error
with respect to its output's ``tanh`` input without the ``tanh'`` factor (the rule
the cloning target of the issue states; ``tanh' ~ 1`` for the small hidden
activations seen here).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class GridWeights:
    """Explicit per-cell weights of one layer: ``w`` and ``beta`` ``[A, B]``."""

    w: jax.Array
    beta: jax.Array

    @property
    def bias(self) -> jax.Array:
        """The layer's bias ``b_b = mean_a beta_ab`` ``[B]``."""
        return self.beta.mean(axis=0)


def reference_cell(w, beta, x, e, lr: float, bias_lr: float):
    """One tick of a single cell (or any broadcastable grid): updated ``(w, beta)`` and its
    outgoing per-cell messages ``(fwd, bwd)``."""
    w = w - lr * jnp.tanh(x) * e
    beta = beta - bias_lr * e
    return w, beta, jnp.tanh(x) * w + beta, e * w


def reference_tick(weights: GridWeights, x: jax.Array, e: jax.Array, lr: float, bias_lr: float):
    """One tick of a layer: ``x`` ``[A]``, ``e`` ``[B]`` -> (weights, ``y [B]``, ``e_a [A]``)."""
    A, B = weights.w.shape
    chex.assert_shape(x, (A,))
    chex.assert_shape(e, (B,))
    w, beta, fwd, bwd = reference_cell(weights.w, weights.beta, x[:, None], e[None, :], lr, bias_lr)
    return GridWeights(w=w, beta=beta), fwd.mean(axis=0), bwd.mean(axis=1)


@struct.dataclass
class BackpropState:
    """Per-layer weights, each layer's last forward output, and the previous input."""

    layers: tuple[GridWeights, ...]
    outputs: tuple[jax.Array, ...]  # layer l's last forward output [A_{l+1}]
    prev_x: jax.Array


def init_backprop_state(layers: tuple[GridWeights, ...]) -> BackpropState:
    outputs = tuple(jnp.zeros((g.w.shape[1],), g.w.dtype) for g in layers)
    prev_x = jnp.zeros((layers[0].w.shape[0],), layers[0].w.dtype)
    return BackpropState(layers=layers, outputs=outputs, prev_x=prev_x)


def backprop_step(
    state: BackpropState,
    x: jax.Array,
    error: jax.Array,
    lr: float,
    bias_lr: float,
    num_ticks: int = 1,
    output_scale: float = 100.0,
) -> tuple[BackpropState, jax.Array]:
    """One online step in the schedule of ``network_step(backward_pass=True,
    forward_sweep_feedback=False)``: top-down over ``prev_x`` with ``error`` (skipped on
    the first step, when ``error`` is all zeros), then bottom-up over ``x`` with zero
    error. Logits are squashed like VSML's, ``tanh(y / s) * s``."""
    layers, n = list(state.layers), len(state.layers)
    first = jnp.all(error == 0)
    inputs = [state.prev_x, *state.outputs[:-1]]
    e = error
    for layer in reversed(range(n)):
        new, e_in = layers[layer], e
        for _ in range(num_ticks):
            new, _, e = reference_tick(new, inputs[layer], e_in, lr, bias_lr)
        layers[layer] = jax.tree.map(
            lambda old, upd: jnp.where(first, old, upd), layers[layer], new
        )
    outputs, f = [], x
    for layer in range(n):
        zero = jnp.zeros((layers[layer].w.shape[1],), x.dtype)
        f_in = f
        for _ in range(num_ticks):
            layers[layer], f, _ = reference_tick(layers[layer], f_in, zero, lr, bias_lr)
        outputs.append(f)
    logits = jnp.tanh(f / output_scale) * output_scale
    return BackpropState(layers=tuple(layers), outputs=tuple(outputs), prev_x=x), logits
