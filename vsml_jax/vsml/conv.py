"""A convolutional VSML layer: the shared cell on every (kernel offset, a, b) of a conv kernel.

A conv layer with a ``k x k`` kernel, ``Ci`` input and ``Co`` output channels has one cell
(one LSTM state, V_L) per kernel entry ``(u, v, a, b)``, as a conv net has one weight per
entry: ``state.h`` / ``state.c`` are ``[k, k, Ci, Co, H]``. Messages live on the spatial
grid: ``fwd_in`` ``[Hi, Wi, Ci, m]`` (one per input location and channel) and ``bwd_in``
``[Ho, Wo, Co, m]`` (one per output location and channel). With zero padding ``p = k // 2``
and stride ``s``, ``Ho = (Hi + 2p - k) // s + 1`` (``ceil(Hi / s)`` for odd ``k``).

One tick, following the conv layer of the paper's code (``vsml_layers.conv2d``):

- at every output location ``(i, j)`` the cell ``(u, v, a, b)`` reads the forward message of
  input location ``(i s + u - p, j s + v - p)``, channel ``a`` (zero outside the image),
  and the backward message of output ``(i, j)``, channel ``b``, and updates its state from
  the shared state ``(h, c)[u, v, a, b]``;
- the new shared state is the mean of those per-location states over ``(i, j)`` (weight
  sharing: every location updates the same kernel entry);
- the forward message to output ``(i, j)``, channel ``b`` is the mean over ``(u, v, a)`` of
  the per-location cells' forward messages;
- the backward message to input ``(q, r)``, channel ``a`` is the sum of the per-location
  cells' backward messages over a set of ``(i, j, u, v, b)`` (below) divided by
  ``k * k * Co``: a mean over kernel offsets and output channels, in which offsets outside
  the set count as zero.

Which cells send their backward message to ``(q, r)`` is :attr:`ConvGeometry.backward`:

- ``'transpose'``: every ``(i, j, u, v)`` that read ``(q, r)`` (``q = i s + u - p``): the
  exact transpose of the forward gather, the mathematically clean message.
- ``'paper'``: what the paper's ``vsml_layers.conv`` computes, per spatial axis: input
  ``q`` gets offset ``u = k - 1 - j`` of output ``o = (q + j - 1) / s`` for ``j < k``, kept
  only when ``q + j - 1`` is a multiple of ``s`` and ``0 <= q + j - 1 < Hi // s``. For
  stride 1 and ``k = 3`` this is the transpose. For stride 2 it drops every output ``o``
  with ``o s >= Hi // s`` (about half of them), and for ``k != 3`` its fixed ``-1`` offset
  pairs ``q`` with ``q = o s + u - (k - 2)`` instead of ``q = o s + u - k // 2``. It
  exists to reproduce the paper's code (meta-parameters trained there expect it; it
  matters wherever a conv layer sits above another layer, whose input it then is);
  ``'transpose'`` is the message a clean conv VSML layer should send.

:func:`conv_direct` vmaps :func:`~vsml_jax.vsml.cell.cell_step` over locations and kernel
entries. :func:`conv_fast` uses the same linearity as the dense fast path
(:mod:`vsml_jax.vsml.layers`): the gate input splits into a projection of each input
location (``O(Hi Wi Ci)`` matmuls) plus one of each output location (``O(Ho Wo Co)``),
``h @ W_h`` is computed once per kernel entry instead of once per location, and the linear
heads are applied after the means. Valid when messages have no layer norm.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np

from vsml_jax.config import CONV_BACKWARDS
from vsml_jax.vsml.cell import (
    CellConfig,
    CellParams,
    CellState,
    cell_step,
    init_cell_state,
    lstm_update,
    messages,
)

LayerOut = tuple[CellState, jax.Array, jax.Array]


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """Static shape of one conv VSML layer: input ``(Hi, Wi, Ci)``, ``Co``, kernel, stride."""

    in_shape: tuple[int, int, int]
    out_channels: int
    kernel: int = 3
    stride: int = 2
    backward: str = "paper"  # which cells send backward messages where (module docstring)

    def __post_init__(self):
        if len(self.in_shape) != 3 or min(self.in_shape) < 1:
            raise ValueError(f"conv in_shape must be (H, W, C) > 0, got {self.in_shape}")
        if self.out_channels < 1 or self.kernel < 1 or self.stride < 1:
            raise ValueError(
                f"conv out_channels, kernel and stride must be >= 1, got {self.out_channels}, "
                f"{self.kernel}, {self.stride}"
            )
        if self.backward not in CONV_BACKWARDS:
            raise ValueError(
                f"conv backward must be one of {', '.join(CONV_BACKWARDS)}, got {self.backward!r}"
            )

    @property
    def pad(self) -> int:
        return self.kernel // 2

    @property
    def out_shape(self) -> tuple[int, int, int]:
        hi, wi, _ = self.in_shape
        k, s, p = self.kernel, self.stride, self.pad
        return ((hi + 2 * p - k) // s + 1, (wi + 2 * p - k) // s + 1, self.out_channels)

    def backward_pairing(self, axis: int) -> tuple[int, int]:
        """``(offset, n)`` of one spatial axis (0: rows, 1: columns) for the backward message:
        outputs ``o < n`` send offset ``u`` to input ``o s + u - offset``."""
        size, out = self.in_shape[axis], self.out_shape[axis]
        if self.backward == "transpose":
            return self.pad, out
        s = self.stride
        return self.kernel - 2, min(out, -(-(size // s) // s))  # outputs with o s < size // s

    @property
    def state_shape(self) -> tuple[int, int, int, int]:
        return (self.kernel, self.kernel, self.in_shape[2], self.out_channels)


def init_conv_state(key: jax.Array, cfg: CellConfig, geom: ConvGeometry) -> CellState:
    """Initial V_L ``[k, k, Ci, Co, H]``: ``h = 0``, the random part of ``c`` truncated-normal
    with std ``cfg.random_cell_std`` or, by default, ``1/sqrt(k)`` as in the paper's code
    (its ``CustomLSTM.initial_vsml_state`` takes the fan-in from the first axis of the
    state shape, which for a conv layer is the kernel height, not ``k k Ci``)."""
    k, _, ci, co = geom.state_shape
    if cfg.random_cell_std is None:
        cfg = dataclasses.replace(cfg, random_cell_std=float(k) ** -0.5)
    state = init_cell_state(key, cfg, (k * k * ci, co))  # [H, Co, k k Ci]
    return jax.tree.map(lambda x: x.T.reshape(*geom.state_shape, -1), state)


def _check(geom: ConvGeometry, state: CellState, fwd_in, bwd_in):
    m = fwd_in.shape[-1]
    chex.assert_shape(state.h, (*geom.state_shape, None))
    chex.assert_shape(fwd_in, (*geom.in_shape, m))
    chex.assert_shape(bwd_in, (*geom.out_shape, m))


def _patches(geom: ConvGeometry, x: jax.Array) -> jax.Array:
    """``x`` ``[Hi, Wi, Ci, n]`` -> ``[Ho, Wo, k, k, Ci, n]``: what (i, j, u, v) reads.

    One strided slice of the zero-padded input per kernel offset (no gather).
    """
    p, s, k = geom.pad, geom.stride, geom.kernel
    ho, wo, _ = geom.out_shape
    padded = jnp.pad(x, ((p, p), (p, p), (0, 0), (0, 0)))
    rows = [
        jnp.stack(
            [padded[u : u + s * (ho - 1) + 1 : s, v : v + s * (wo - 1) + 1 : s] for v in range(k)],
            axis=2,
        )
        for u in range(k)
    ]
    return jnp.stack(rows, axis=2)


def _backward_patches(geom: ConvGeometry, y: jax.Array) -> jax.Array:
    """``[Ho, Wo, k, k, Ci, n]`` summed to ``[Hi, Wi, Ci, n]`` along :attr:`ConvGeometry.backward`.

    With ``'transpose'`` this is the adjoint of :func:`_patches`. Each kernel offset's slice
    is put in place by an interior (strided) pad whose edges may be negative (a crop), and
    the pads are summed (no scatter).
    """
    hi, wi, _ = geom.in_shape
    s, k = geom.stride, geom.kernel
    (off_h, n_h), (off_w, n_w) = geom.backward_pairing(0), geom.backward_pairing(1)
    total = jnp.zeros((hi, wi, *y.shape[4:]), y.dtype)
    if n_h == 0 or n_w == 0:
        return total
    zero = jnp.zeros((), y.dtype)
    for u in range(k):
        for v in range(k):
            lo_h, lo_w = u - off_h, v - off_w
            total = total + jax.lax.pad(
                y[:n_h, :n_w, u, v],
                zero,
                (
                    (lo_h, hi - lo_h - (s * (n_h - 1) + 1), s - 1),
                    (lo_w, wi - lo_w - (s * (n_w - 1) + 1), s - 1),
                    (0, 0, 0),
                    (0, 0, 0),
                ),
            )
    return total


def _reads(geom: ConvGeometry) -> np.ndarray:
    """``[Hi, Wi, 1, 1]`` float64: how many (i, j, u, v) send to each input location."""
    hi, wi, _ = geom.in_shape
    s, k = geom.stride, geom.kernel
    (off_h, n_h), (off_w, n_w) = geom.backward_pairing(0), geom.backward_pairing(1)
    count = np.zeros((hi, wi))
    for i in range(n_h):
        for j in range(n_w):
            for u in range(k):
                for v in range(k):
                    q, r = i * s + u - off_h, j * s + v - off_w
                    if 0 <= q < hi and 0 <= r < wi:
                        count[q, r] += 1.0
    return count[:, :, None, None]


def conv_direct(
    params: CellParams,
    state: CellState,
    fwd_in: jax.Array,
    bwd_in: jax.Array,
    geom: ConvGeometry,
    layer_norm: bool = False,
) -> LayerOut:
    """Per-cell formulation: ``cell_step`` at every (i, j, u, v, a, b), then the means."""
    _check(geom, state, fwd_in, bwd_in)
    k, _, ci, co = geom.state_shape
    f = _patches(geom, fwd_in)  # [Ho, Wo, k, k, Ci, m]

    def cell(s, f_in, e_in):
        return cell_step(params, s, f_in, e_in, layer_norm)

    over_b = jax.vmap(cell, in_axes=(0, None, 0))  # s [Co], f shared, e [Co]
    over_a = jax.vmap(over_b, in_axes=(0, 0, None))  # s [Ci, Co], f [Ci]
    over_v = jax.vmap(over_a, in_axes=(0, 0, None))
    over_u = jax.vmap(over_v, in_axes=(0, 0, None))  # one location: s [k, k, Ci, Co]
    over_j = jax.vmap(over_u, in_axes=(None, 0, 0))  # state shared over locations
    over_i = jax.vmap(over_j, in_axes=(None, 0, 0))
    states, fwd, bwd = over_i(state, f, bwd_in)  # [Ho, Wo, k, k, Ci, Co, ...]
    new_state = jax.tree.map(lambda x: x.mean(axis=(0, 1)), states)
    fwd_out = fwd.mean(axis=(2, 3, 4))  # [Ho, Wo, Co, m]
    bwd_out = _backward_patches(geom, bwd.sum(axis=5)) / (k * k * co)  # [Hi, Wi, Ci, m]
    return new_state, fwd_out, bwd_out


def conv_fast(
    params: CellParams,
    state: CellState,
    fwd_in: jax.Array,
    bwd_in: jax.Array,
    geom: ConvGeometry,
    layer_norm: bool = False,
) -> LayerOut:
    """Algebraic fast path: split gate projections, shared ``h W_h``, heads after the means."""
    if layer_norm:
        raise ValueError("conv_fast needs linear message heads; use conv_direct with layer_norm")
    _check(geom, state, fwd_in, bwd_in)
    k, _, ci, co = geom.state_shape
    m = fwd_in.shape[-1]
    rows = _patches(geom, fwd_in @ params.w_in[:m])  # [Ho, Wo, k, k, Ci, 4H]
    cols = bwd_in @ params.w_in[m:]  # [Ho, Wo, Co, 4H]
    gate = rows[:, :, :, :, :, None, :] + cols[:, :, None, None, None, :, :]
    # lstm_update broadcasts the shared state [k, k, Ci, Co, H] over the locations
    local = lstm_update(params, state, gate)  # [Ho, Wo, k, k, Ci, Co, H]
    new_state = jax.tree.map(lambda x: x.mean(axis=(0, 1)), local)
    fwd, _ = messages(params, local.h.mean(axis=(2, 3, 4)), False)  # [Ho, Wo, Co, m]
    h_in = _backward_patches(geom, local.h.sum(axis=5)) / (k * k * co)  # [Hi, Wi, Ci, H]
    reads = jnp.asarray(_reads(geom) / (k * k), h_in.dtype)  # in the input dtype
    bwd = h_in @ params.w_bwd + params.b_bwd * reads
    return new_state, fwd, bwd


def conv(params, state, fwd_in, bwd_in, geom: ConvGeometry, layer_norm=False, impl="auto"):
    """Dispatch to the fast path when it is valid (``impl='auto'``) or as asked."""
    if impl == "auto":
        impl = "direct" if layer_norm else "fast"
    if impl == "fast":
        return conv_fast(params, state, fwd_in, bwd_in, geom, layer_norm)
    if impl == "direct":
        return conv_direct(params, state, fwd_in, bwd_in, geom, layer_norm)
    raise ValueError(f"unknown layer impl {impl!r}; use 'auto', 'fast' or 'direct'")
