"""A VSML network: stacked dense (optionally preceded by conv) VSML layers ticked together.

Layer ``l`` is an ``A_l x A_{l+1}`` grid with ``A_0`` the input size and
``A_L`` the number of classes. The input ``x`` enters as forward-message channel
0 of the first layer; the error ``dL/dlogits`` enters as backward-message
channel 0 of the last layer (and, with ``feed_label``, the one-hot label as
channel 1). Logits are read from forward-message channel ``output_channel`` of
the last layer, squashed with ``tanh(y / 100) * 100``.

With ``conv_channels`` the first layers are convolutional VSML layers
(:mod:`vsml_jax.vsml.conv`) over the image ``image_shape`` (kernel ``conv_kernel``, stride
``conv_stride``); between layers every message array is kept flat (``[H * W * C, m]``, in
row-major ``(H, W, C)`` order), so a dense layer reads a conv layer's output grid as its
``A = H * W * C`` inputs. ``conv_backward`` picks the conv layers' backward message
(``'paper'``, the paper's masked stride-2 message, or ``'transpose'``; see
:mod:`vsml_jax.vsml.conv`).

As in the paper's code, a step sweeps the layers bottom-up and ticks each layer
``num_micro_ticks`` times with fixed incoming messages: the fresh forward message
of layer ``l - 1`` and the backward message layer ``l + 1`` emitted on the
previous step. With ``backward_pass`` the feedback is instead delivered in a
separate top-down sweep over the previous input before the new input is read
(see :func:`network_step`).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from vsml_jax.config import NetworkConfig
from vsml_jax.vsml.cell import CellParams, CellState, init_cell_params, init_cell_state
from vsml_jax.vsml.conv import ConvGeometry, conv, init_conv_state
from vsml_jax.vsml.layers import dense, forward_output


def conv_geometries(cfg: NetworkConfig) -> tuple[ConvGeometry, ...]:
    """The static shape of each conv layer (``()`` without ``conv_channels``)."""
    geoms, shape = [], cfg.image_shape
    for channels in cfg.conv_channels:
        geoms.append(
            ConvGeometry(
                tuple(shape), channels, cfg.conv_kernel, cfg.conv_stride, cfg.conv_backward
            )
        )
        shape = geoms[-1].out_shape
    return tuple(geoms)


def layer_sizes(cfg: NetworkConfig, input_dim: int, num_classes: int) -> tuple[int, ...]:
    """``A_l`` of every layer boundary; a conv layer's is its flat grid ``H * W * C``."""
    geoms = conv_geometries(cfg)
    if geoms and input_dim != int(np.prod(cfg.image_shape)):
        raise ValueError(
            f"network.image_shape {cfg.image_shape} has {int(np.prod(cfg.image_shape))} "
            f"pixels but the inputs have {input_dim}; set image_shape to the image size "
            "(and use no projection: data.input_dim null)"
        )
    convs = tuple(int(np.prod(g.out_shape)) for g in geoms)
    return (input_dim, *convs, *cfg.hidden_layers, num_classes)


@struct.dataclass
class NetworkState:
    """V_L of every layer plus the messages in flight between ticks."""

    cells: tuple[CellState, ...]  # dense layer l: [H, A_{l+1}, A_l]; conv: [k, k, Ci, Co, H]
    bwd_msgs: tuple[jax.Array, ...]  # layer l's last backward output: [A_l, m]
    prev_x: jax.Array  # [A_0], the previous input (for the separate backward pass)
    # conv layer l's last forward output [A_{l+1}, m] (the top-down sweep's input to layer
    # l + 1: a conv layer's state is shared over locations, so its output grid cannot be
    # recomputed from it as a dense layer's can); () without conv layers
    fwd_msgs: tuple[jax.Array, ...] = ()


def init_network_params(key, cfg: NetworkConfig, num_layers: int) -> tuple[CellParams, ...]:
    """One shared :class:`CellParams` (``share_layers``) or one per layer."""
    n = 1 if cfg.share_layers else num_layers
    return tuple(init_cell_params(k, cfg.cell) for k in jax.random.split(key, n))


def init_network_state(key, cfg: NetworkConfig, input_dim: int, num_classes: int) -> NetworkState:
    sizes = layer_sizes(cfg, input_dim, num_classes)
    keys = jax.random.split(key, len(sizes) - 1)
    geoms = conv_geometries(cfg)
    cells = tuple(
        init_conv_state(k, cfg.cell, geoms[i])
        if i < len(geoms)
        else init_cell_state(k, cfg.cell, (a, b))
        for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:]))
    )
    m = cfg.cell.message
    bwd = tuple(jnp.zeros((a, m), jnp.float32) for a in sizes[:-1])
    fwd = tuple(jnp.zeros((a, m), jnp.float32) for a in sizes[1 : len(geoms) + 1])
    return NetworkState(
        cells=cells, bwd_msgs=bwd, prev_x=jnp.zeros((input_dim,), jnp.float32), fwd_msgs=fwd
    )


def _layer_params(params: tuple[CellParams, ...], layer: int) -> CellParams:
    return params[0] if len(params) == 1 else params[layer]


def _tick(cfg: NetworkConfig, params, layer: int, cell, fwd_in, bwd_in):
    """One tick of layer ``layer`` on flat messages ``[A_l, m]`` / ``[A_{l+1}, m]``."""
    p = _layer_params(params, layer)
    geoms = conv_geometries(cfg)
    if layer >= len(geoms):
        return dense(p, cell, fwd_in, bwd_in, cfg.cell.layer_norm, cfg.impl, cfg.cell.matmul_dtype)
    g, m = geoms[layer], fwd_in.shape[-1]
    cell, fwd, bwd = conv(
        p,
        cell,
        fwd_in.reshape(*g.in_shape, m),
        bwd_in.reshape(*g.out_shape, m),
        g,
        cfg.cell.layer_norm,
        "fast" if cfg.impl == "fused" else cfg.impl,  # the kernel is the dense layer's
    )
    return cell, fwd.reshape(-1, m), bwd.reshape(-1, m)


def _embed(values: jax.Array, m: int, channel: int = 0) -> jax.Array:
    return jnp.zeros((values.shape[0], m), values.dtype).at[:, channel].set(values)


def _sweep_up(cfg, params, state: NetworkState, fwd_in, top_bwd, lower_feedback: bool = True):
    """One bottom-up sweep (micro-ticks per layer); returns the new state and the top output.

    Layer ``l < L - 1`` reads the backward message layer ``l + 1`` last emitted, or zeros
    when ``lower_feedback`` is False.
    """
    cells, bwd_msgs, fwd_msgs = list(state.cells), list(state.bwd_msgs), list(state.fwd_msgs)
    n = len(cells)
    f = fwd_in
    for layer in range(n):
        e = top_bwd if layer == n - 1 else state.bwd_msgs[layer + 1]
        if not lower_feedback:
            e = jnp.zeros_like(e)
        f_in = f
        for _ in range(cfg.num_micro_ticks):
            cells[layer], f, bwd_msgs[layer] = _tick(cfg, params, layer, cells[layer], f_in, e)
        if layer < len(fwd_msgs):
            fwd_msgs[layer] = f
    new = state.replace(cells=tuple(cells), bwd_msgs=tuple(bwd_msgs), fwd_msgs=tuple(fwd_msgs))
    return new, f


def _sweep_down(cfg, params, state: NetworkState, fwd_in, top_bwd):
    """One top-down sweep: each layer reads the fresh backward message from above.

    Each layer's forward input is the forward message its lower neighbour last emitted:
    recomputed from a dense layer's current hidden state, stored for a conv layer.
    """
    cells, bwd_msgs = list(state.cells), list(state.bwd_msgs)
    n = len(cells)
    fwd_inputs = [fwd_in]
    for layer in range(n - 1):
        if layer < len(state.fwd_msgs):
            fwd_inputs.append(state.fwd_msgs[layer])
            continue
        p = _layer_params(params, layer)
        fwd_inputs.append(
            forward_output(p, cells[layer].h, cfg.cell.layer_norm, cfg.cell.matmul_dtype)
        )
    e = top_bwd
    for layer in reversed(range(n)):
        e_in = e
        for _ in range(cfg.num_micro_ticks):
            cells[layer], _, e = _tick(cfg, params, layer, cells[layer], fwd_inputs[layer], e_in)
        bwd_msgs[layer] = e
    return state.replace(cells=tuple(cells), bwd_msgs=tuple(bwd_msgs))


def network_step(
    cfg: NetworkConfig,
    params: tuple[CellParams, ...],
    state: NetworkState,
    x: jax.Array,
    error: jax.Array,
    label: jax.Array,
) -> tuple[NetworkState, jax.Array]:
    """Read ``x`` ``[A_0]`` and the previous step's ``error``/``label`` ``[C]``; emit logits.

    Without ``backward_pass`` (default) the input and the feedback are presented
    together in one bottom-up sweep. With ``backward_pass``, the feedback is first
    delivered by a top-down sweep over the previous input ``prev_x`` (so the error
    reaches every layer within the step, as the paper's reverse tick does right
    after the output), then ``x`` is read by a bottom-up sweep in which the top layer
    gets zero feedback and lower layers read the backward messages the top-down sweep
    left (as in the paper's code; zeros with ``forward_sweep_feedback=False``). On the
    first step (all-zero feedback: there is no previous example) the top-down sweep is
    skipped, as in the paper's code.
    """
    chex.assert_rank([x, error, label], 1)
    with jax.default_matmul_precision(cfg.cell.precision):  # every matmul of the step
        return _network_step(cfg, params, state, x, error, label)


def _network_step(cfg: NetworkConfig, params, state: NetworkState, x, error, label):
    m = cfg.cell.message
    top = _embed(error, m, 0)
    if cfg.feed_label:
        top = top.at[:, 1].set(label)
    fwd_in = _embed(x, m, 0)
    if cfg.backward_pass:
        swept = _sweep_down(cfg, params, state, _embed(state.prev_x, m, 0), top)
        first = jnp.all(error == 0) & jnp.all(label == 0)
        state = jax.tree.map(lambda old, new: jnp.where(first, old, new), state, swept)
        top = jnp.zeros_like(top)
    state, out = _sweep_up(cfg, params, state, fwd_in, top, cfg.forward_sweep_feedback)
    logits = jnp.tanh(out[:, cfg.output_channel] / cfg.output_scale) * cfg.output_scale
    return state.replace(prev_x=x), logits
