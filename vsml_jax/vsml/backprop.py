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
import numpy as np
from flax import struct

from vsml_jax.vsml.cell import CellConfig, CellParams


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


def backprop_cell(
    cfg: CellConfig,
    lr: float = 1.0,
    bias_lr: float = 0.03,
    weight_scale: float = 2000.0,
    error_gain: float = 0.01,
    bias_scale: float = 50.0,
    gate_bias: float = 30.0,
) -> tuple[CellParams, jax.Array]:
    """A V_M with which the paper's LSTM cell *is* the SGD cell of :func:`reference_cell`,
    and the read-out ``[2, H]`` of ``(w, beta)`` from its cell state.

    The multiplications SGD needs come from the gates: ``sigmoid(2u) - sigmoid(-2u) =
    tanh(u)``, so two units holding the same cell value ``c`` with output gates
    ``sigmoid(+-2u)`` emit ``tanh(u) tanh(c)`` as the difference of their ``h``. Units
    (``R = cfg.num_random``; needs ``random_cell_copies = 4`` and ``hidden >= R + 5``):

    - ``P = 0..3`` hold four copies of one random draw ``r``; input gate ``sigmoid(2 x)``,
      cell input ``tanh(-kappa e)``; output gates ``sigmoid(2x), sigmoid(-2x),
      sigmoid(2 k_e e), sigmoid(-2 k_e e)`` (``k_e = error_gain``);
    - ``Q = R..R+3`` (start at 0): the same, but input gate ``1/2``. ``d = c_P - c_Q``
      then changes by ``(sigmoid(2x) - 1/2) tanh(-kappa e) = -tanh(x) tanh(kappa e) / 2``
      per tick, the part of the updates that is even in ``x`` cancelling;
    - ``R + 4`` integrates ``tanh(-kappa_b e)`` (input gate 1): the bias share;
    - every other gate is saturated: forget gates 1 (``sigmoid(gate_bias)`` is 1 in
      float32: the stored weight neither leaks nor decays), unused units' input and
      output gates 0. There is no recurrent weight.

    With ``w = weight_scale * d`` and ``beta = bias_scale * c_{R+4}`` (the read-out),
    ``kappa = 2 lr / weight_scale`` and ``kappa_b = bias_lr / bias_scale`` a tick updates
    ``w <- w - lr tanh(x) e`` and ``beta <- beta - bias_lr e``, and the heads emit
    ``fwd = tanh(x) w + beta`` and ``bwd = e w`` (channel 0; zeros elsewhere), up to the
    ``tanh`` of small arguments: ``tanh(kappa e)`` and ``tanh(k_e e)`` (errors up to
    ``~0.1 / k_e``) and ``tanh(c)`` of the stored values, which stay below ~0.1 while
    ``|w| << weight_scale / 10`` and ``|beta| << bias_scale / 10``. The random draw gives
    the initial weight ``weight_scale * r``: set ``random_cell_std`` to the wanted
    ``std(w_0) / weight_scale``. Nothing depends on the grid size: one V_M serves any
    layer of any network (see the scale convention above).
    """
    H, m, R = cfg.hidden, cfg.message, cfg.num_random
    if cfg.random_cell_copies != 4 or R < 4 or H < R + 5:
        raise ValueError(
            "backprop_cell needs cell.random_cell_copies 4, >= 4 random units and "
            f"hidden >= num_random + 5; got {cfg}"
        )
    if cfg.layer_norm:
        raise ValueError("backprop_cell needs linear message heads (cell.layer_norm=false)")
    kappa, kappa_b = 2.0 * lr / weight_scale, bias_lr / bias_scale
    b = np.zeros((4, H), np.float32)
    b[0], b[1], b[3] = -gate_bias, gate_bias, -gate_bias  # i = 0, f = 1, o = 0
    w_in = np.zeros((2 * m, 4, H), np.float32)  # rows: x (0) and e (m) channels
    w_fwd, w_bwd = np.zeros((H, m), np.float32), np.zeros((H, m), np.float32)
    for units, sign in ((range(4), 1.0), (range(R, R + 4), -1.0)):
        u = list(units)
        if sign > 0:
            w_in[0, 0, u] = 2.0  # input gate sigmoid(2x)
        b[0, u] = 0.0  # (Q: sigmoid(0) = 1/2)
        w_in[m, 2, u] = -kappa  # cell input tanh(-kappa e)
        b[3, u] = 0.0
        w_in[0, 3, u[0]], w_in[0, 3, u[1]] = 2.0, -2.0
        w_in[m, 3, u[2]], w_in[m, 3, u[3]] = 2.0 * error_gain, -2.0 * error_gain
        w_fwd[u[0], 0], w_fwd[u[1], 0] = sign * weight_scale, -sign * weight_scale
        w_bwd[u[2], 0] = sign * weight_scale / error_gain
        w_bwd[u[3], 0] = -sign * weight_scale / error_gain
    beta = R + 4
    b[0, beta], b[3, beta] = gate_bias, gate_bias  # i = 1, o = 1
    w_in[m, 2, beta] = -kappa_b
    w_fwd[beta, 0] = bias_scale
    readout = np.zeros((2, H), np.float32)
    readout[0, 0], readout[0, R], readout[1, beta] = weight_scale, -weight_scale, bias_scale
    params = CellParams(
        w_in=jnp.asarray(w_in.reshape(2 * m, 4 * H)),
        w_h=jnp.zeros((H, 4 * H), jnp.float32),
        b=jnp.asarray(b.reshape(4 * H)),
        w_fwd=jnp.asarray(w_fwd),
        b_fwd=jnp.zeros((m,), jnp.float32),
        w_bwd=jnp.asarray(w_bwd),
        b_bwd=jnp.zeros((m,), jnp.float32),
        ln_scale=jnp.ones((2, m), jnp.float32),
        ln_bias=jnp.zeros((2, m), jnp.float32),
    )
    return params, jnp.asarray(readout)
