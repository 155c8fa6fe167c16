"""The VSML sub-RNN: one small LSTM per weight, all sharing the meta-parameters V_M.

A cell at grid position (a, b) reads the forward message ``f_a`` of its input
unit and the backward message ``e_b`` of its output unit, updates its LSTM state
(the learned variables V_L) and emits a forward and a backward message through
two linear heads. This module holds the parameters, the initial state and the
update of a single cell; :mod:`vsml_jax.vsml.layers` vmaps it over the grid.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
from flax import struct

from vsml_jax.config import CellConfig


def matmul(a: jax.Array, b: jax.Array, dtype: str = "float32") -> jax.Array:
    """``a @ b``; with ``dtype='bfloat16'`` the inputs are rounded to bfloat16 and the
    products accumulated in float32.

    Lowered for CPU, the rounded inputs are multiplied as float32, which gives the same
    numbers (a product of two bfloat16 values is exact in float32): XLA's CPU dot has no
    bfloat16 x bfloat16 -> float32 kernel for some operand layouts (a vmapped
    ``[4H, H] @ [H, B * A]``), and this CPU has no bfloat16 arithmetic to gain from. The
    platform is the one the program is lowered for (``lax.platform_dependent``), not the
    process's default backend: a TPU program compiled on a CPU host multiplies bfloat16."""
    if dtype == "float32":
        return a @ b
    return jax.lax.platform_dependent(
        a,
        b,
        cpu=functools.partial(_matmul_rounded, dtype=dtype),
        default=functools.partial(_matmul_native, dtype=dtype),
    )


def _matmul_rounded(a: jax.Array, b: jax.Array, dtype: str) -> jax.Array:
    return a.astype(dtype).astype(jnp.float32) @ b.astype(dtype).astype(jnp.float32)


def _matmul_native(a: jax.Array, b: jax.Array, dtype: str) -> jax.Array:
    return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


@struct.dataclass
class CellParams:
    """V_M: the LSTM's gate weights and the two message heads.

    Gate order along the ``4 * hidden`` axis is (input, forget, cell, output).
    ``w_in`` rows ``[:message]`` read the forward message, ``[message:]`` the backward one.
    """

    w_in: jax.Array  # [2m, 4H]
    w_h: jax.Array  # [H, 4H]
    b: jax.Array  # [4H]
    w_fwd: jax.Array  # [H, m]
    b_fwd: jax.Array  # [m]
    w_bwd: jax.Array  # [H, m]
    b_bwd: jax.Array  # [m]
    ln_scale: jax.Array  # [2, m]  (forward, backward); used only with layer_norm
    ln_bias: jax.Array  # [2, m]


@struct.dataclass
class CellState:
    """V_L of one or many cells: LSTM hidden ``h`` and cell ``c``.

    Two layouts: hidden last (``[..., H]``: a single cell, conv layers, the cloning
    objective) and hidden first, cells minor (``[H, B, A]``: the dense layer's grid, so
    that the gate arithmetic runs along the long input axis ``A``; see
    :func:`init_cell_state`)."""

    h: jax.Array
    c: jax.Array


def _trunc_normal(key, shape, fan_in):
    std = 1.0 / jnp.sqrt(fan_in)
    return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)


def init_cell_params(key: jax.Array, cfg: CellConfig) -> CellParams:
    """Truncated-normal weights with std 1/sqrt(fan_in); forget bias +5, input bias -5."""
    H, m = cfg.hidden, cfg.message
    k = jax.random.split(key, 4)
    b = jnp.zeros((4, H), jnp.float32)
    b = b.at[0].set(cfg.input_bias).at[1].set(cfg.forget_bias)
    return CellParams(
        w_in=_trunc_normal(k[0], (2 * m, 4 * H), 2 * m),
        w_h=_trunc_normal(k[1], (H, 4 * H), H),
        b=b.reshape(4 * H),
        w_fwd=_trunc_normal(k[2], (H, m), H),
        b_fwd=jnp.zeros((m,), jnp.float32),
        w_bwd=_trunc_normal(k[3], (H, m), H),
        b_bwd=jnp.zeros((m,), jnp.float32),
        ln_scale=jnp.ones((2, m), jnp.float32),
        ln_bias=jnp.zeros((2, m), jnp.float32),
    )


def random_units(key: jax.Array, cfg: CellConfig, shape: tuple[int, ...], std) -> jax.Array:
    """The random part of initial cell states ``[*shape, num_random]``: truncated-normal,
    each draw repeated over ``random_cell_copies`` consecutive units."""
    k = cfg.random_cell_copies
    draw = jax.random.truncated_normal(key, -2.0, 2.0, (*shape, cfg.num_random // k), jnp.float32)
    return std * (draw if k == 1 else jnp.repeat(draw, k, axis=-1))


def init_cell_state(key: jax.Array, cfg: CellConfig, shape: tuple[int, int]) -> CellState:
    """Initial V_L of an ``A x B`` grid of cells, ``shape = (A, B)``, in the dense layer's
    layout ``[H, B, A]`` (cell ``(a, b)`` is ``h[:, b, a]``): ``h = 0``; the leading
    ``random_cell_fraction`` of ``c`` truncated-normal with std ``1/sqrt(A)`` (by default),
    so that the random part plays the role of a freshly initialised weight. The draw is
    that of the ``[A, B, H]`` layout, transposed."""
    H = cfg.hidden
    A, B = shape
    std = cfg.random_cell_std if cfg.random_cell_std is not None else 1.0 / jnp.sqrt(A)
    noise = random_units(key, cfg, (A, B), std)
    c = jnp.concatenate([noise, jnp.zeros((A, B, H - cfg.num_random), jnp.float32)], -1)
    return CellState(h=jnp.zeros((H, B, A), jnp.float32), c=jnp.transpose(c, (2, 1, 0)))


def _gates(z: jax.Array, c: jax.Array, axis: int = -1) -> CellState:
    """LSTM gates from pre-activations ``z`` (``4H`` along ``axis``) and the old cell ``c``.

    ``sigmoid(x) = (1 + tanh(x / 2)) / 2``: one ``tanh`` over all four gates (the cell
    gate unscaled) is cheaper on CPUs than three logistics and a tanh, and equal to
    float32 rounding."""
    H = c.shape[axis]
    shape = [1] * z.ndim
    shape[axis] = 4 * H
    scale = jnp.concatenate(
        [jnp.full((2 * H,), 0.5, z.dtype), jnp.ones((H,), z.dtype), jnp.full((H,), 0.5, z.dtype)]
    )
    t = jnp.tanh(z * scale.reshape(shape))
    i, f, g, o = jnp.split(t, 4, axis=axis)
    c = (0.5 + 0.5 * f) * c + (0.5 + 0.5 * i) * g
    h = (0.5 + 0.5 * o) * jnp.tanh(c)
    return CellState(h=h, c=c)


def lstm_update(
    params: CellParams, state: CellState, gate_input: jax.Array, dtype: str = "float32"
) -> CellState:
    """LSTM update of cells in the hidden-last layout from the input part of the gate
    pre-activations (``[..., 4H]``)."""
    return _gates(gate_input + matmul(state.h, params.w_h, dtype) + params.b, state.c)


def lstm_update_grid(
    params: CellParams, state: CellState, gate_input: jax.Array, dtype: str = "float32"
) -> CellState:
    """:func:`lstm_update` in the grid layout: ``state`` ``[H, B, A]``, ``gate_input``
    ``[4H, B, A]``. The recurrent term is one ``[4H, H] @ [H, B * A]`` matmul."""
    H = state.h.shape[0]
    rec = matmul(params.w_h.T, state.h.reshape(H, -1), dtype).reshape(4 * H, *state.h.shape[1:])
    b = params.b.reshape(4 * H, *([1] * (state.h.ndim - 1)))
    return _gates(gate_input + rec + b, state.c, axis=0)


def lstm_update_grid_elementwise(
    params: CellParams, state: CellState, rows: jax.Array, cols: jax.Array, dtype: str = "float32"
) -> CellState:
    """:func:`lstm_update_grid` with ``gate_input = rows[:, None, :] + cols[:, :, None]``
    (``rows`` ``[4H, A]``, ``cols`` ``[4H, B]``) for accelerators: each gate is summed
    on its own from ``rows``, ``cols``, the bias and :func:`recurrent_terms`, so nothing of
    size ``[4H, B, A]`` is written to memory; XLA fuses the tick into one pass over the
    state. Equal to :func:`lstm_update_grid` within float32 rounding (another order of
    the same sums)."""
    H = state.h.shape[0]
    z = []
    for g in range(4):
        part = slice(g * H, (g + 1) * H)
        z.append(
            rows[part, None, :]
            + cols[part, :, None]
            + params.b[part, None, None]
            + recurrent_terms(params.w_h[:, part], state.h, dtype)
        )
    i, f, o = (jnp.tanh(0.5 * z[k]) for k in (0, 1, 3))  # sigmoid(x) = (1 + tanh(x/2)) / 2
    c = (0.5 + 0.5 * f) * state.c + (0.5 + 0.5 * i) * jnp.tanh(z[2])
    return CellState(h=(0.5 + 0.5 * o) * jnp.tanh(c), c=c)


def recurrent_terms(w_h: jax.Array, h: jax.Array, dtype: str = "float32") -> jax.Array:
    """``w_h.T @ h`` over the grid (``h`` ``[H, ...]`` -> ``[4H, ...]``) as ``H`` broadcast
    multiply-adds instead of a matmul: what accelerators run. A matmul with ``H = 16``
    terms writes its ``[4H, B * A]`` output to memory and the gates read it back (on a
    TPU, 4x the state's bytes per tick, with a relayout on each side); elementwise, XLA
    fuses the sum into the gates, so a tick reads and writes little more than the state.
    The products are rounded like :func:`matmul`'s inputs (``dtype``) and summed in
    float32, in another order than a matmul's (within float32 rounding of it)."""
    if dtype != "float32":
        w_h = w_h.astype(dtype).astype(jnp.float32)
        h = h.astype(dtype).astype(jnp.float32)
    w = w_h.reshape(*w_h.shape, *([1] * (h.ndim - 1)))  # [H, 4H, 1, ...]
    out = w[0] * h[0]
    for k in range(1, h.shape[0]):
        out = out + w[k] * h[k]
    return out


def _layer_norm(x, scale, bias, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + eps) * scale + bias


def messages(
    params: CellParams, h: jax.Array, layer_norm: bool, dtype: str = "float32"
) -> tuple[jax.Array, jax.Array]:
    """Outgoing (forward, backward) messages from hidden outputs ``h`` ``[..., H]``."""
    fwd = matmul(h, params.w_fwd, dtype) + params.b_fwd
    bwd = matmul(h, params.w_bwd, dtype) + params.b_bwd
    if layer_norm:
        fwd = _layer_norm(fwd, params.ln_scale[0], params.ln_bias[0])
        bwd = _layer_norm(bwd, params.ln_scale[1], params.ln_bias[1])
    return fwd, bwd


def cell_step(
    params: CellParams,
    state: CellState,
    fwd_in: jax.Array,
    bwd_in: jax.Array,
    layer_norm: bool,
    dtype: str = "float32",
) -> tuple[CellState, jax.Array, jax.Array]:
    """One tick of a single cell: read ``fwd_in``/``bwd_in`` (``[m]``), emit two messages.

    The gate pre-activations are ``[fwd_in, bwd_in, h] @ [w_in; w_h]``, written as three
    matmuls: vmapped over the grid, the ``fwd_in`` term does not depend on ``b`` nor the
    ``bwd_in`` term on ``a``, so ``vmap`` computes each once per row or column (the
    per-cell ``[2m + H]`` input concatenated over the grid cost about a fifth of the
    direct path's step). The two heads are one matmul with ``[w_fwd, w_bwd]``."""
    chex.assert_rank([fwd_in, bwd_in, state.h], 1)
    m = fwd_in.shape[-1]
    z = (
        matmul(fwd_in, params.w_in[:m], dtype)
        + matmul(bwd_in, params.w_in[m:], dtype)
        + matmul(state.h, params.w_h, dtype)
    )
    state = _gates(z + params.b, state.c)
    if layer_norm:
        fwd, bwd = messages(params, state.h, layer_norm, dtype)
        return state, fwd, bwd
    heads = matmul(state.h, jnp.concatenate([params.w_fwd, params.w_bwd], axis=1), dtype)
    heads = heads + jnp.concatenate([params.b_fwd, params.b_bwd])
    return state, heads[:m], heads[m:]
