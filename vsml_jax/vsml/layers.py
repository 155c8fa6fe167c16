"""A dense VSML layer: the shared cell on every (a, b) of an ``A x B`` grid.

Inputs are ``fwd_in`` ``[A, m]`` (one forward message per input unit) and
``bwd_in`` ``[B, m]`` (one backward message per output unit). Cell (a, b) reads
``fwd_in[a]`` and ``bwd_in[b]``. Outgoing messages are mean-reduced: forward over
``a`` (``[B, m]``, the next layer's input) and backward over ``b`` (``[A, m]``,
the previous layer's error signal). The grid's state is ``[H, B, A]`` (cell ``(a, b)``
is ``h[:, b, a]``; :func:`~vsml_jax.vsml.cell.init_cell_state`): with the cells as the
minor axis, the gate arithmetic vectorises along ``A`` (1.6x faster per member-step
than ``[A, B, H]`` on a 784x10 grid on CPU; docs/BENCHMARKS.md).

Two implementations compute the same function:

- :func:`dense_direct` vmaps :func:`~vsml_jax.vsml.cell.cell_step` over the grid:
  the literal per-cell formulation (any message head, layer norm included). The cell
  writes its gate input as ``f_a @ W_f + e_b @ W_b + h @ W_h``, so ``vmap`` already
  computes the input terms once per row and column (``O(A + B)``, not ``O(A B)``).
- :func:`dense_fast` uses linearity: with linear heads the grid mean commutes with
  the head, so the head is applied to ``mean_a h`` and ``mean_b h`` only, and the
  state stays in the grid layout throughout. Valid when messages have no layer norm.

``dense_fast(..., fused=True)`` (``impl='fused'``, opt-in) runs the fast path's LSTM
update as one CPU kernel (:mod:`vsml_jax.vsml.kernel`).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from vsml_jax.vsml import kernel
from vsml_jax.vsml.cell import (
    CellParams,
    CellState,
    cell_step,
    lstm_update_grid,
    lstm_update_grid_elementwise,
    matmul,
    messages,
)

LayerOut = tuple[CellState, jax.Array, jax.Array]


def _check(state: CellState, fwd_in: jax.Array, bwd_in: jax.Array):
    _, B, A = state.h.shape
    m = fwd_in.shape[-1]
    chex.assert_shape(fwd_in, (A, m))
    chex.assert_shape(bwd_in, (B, m))


def dense_direct(
    params: CellParams,
    state: CellState,
    fwd_in: jax.Array,
    bwd_in: jax.Array,
    layer_norm: bool = False,
    dtype: str = "float32",
) -> LayerOut:
    """Per-cell formulation: ``vmap`` over a and b, then mean-reduce the messages."""
    _check(state, fwd_in, bwd_in)
    over_a = jax.vmap(cell_step, in_axes=(None, 1, 0, None, None, None), out_axes=(1, 0, 0))
    over_ba = jax.vmap(over_a, in_axes=(None, 1, None, 0, None, None), out_axes=(1, 0, 0))
    state, fwd, bwd = over_ba(params, state, fwd_in, bwd_in, layer_norm, dtype)  # [B, A, m]
    return state, fwd.mean(axis=1), bwd.mean(axis=0)


def dense_fast(
    params: CellParams,
    state: CellState,
    fwd_in: jax.Array,
    bwd_in: jax.Array,
    layer_norm: bool = False,
    dtype: str = "float32",
    fused: bool = False,
) -> LayerOut:
    """Algebraic fast path: row/column gate projections and heads after the mean;
    ``fused``: the LSTM update on the fused CPU kernel."""
    if layer_norm:
        raise ValueError("dense_fast needs linear message heads; use dense_direct with layer_norm")
    _check(state, fwd_in, bwd_in)
    m = fwd_in.shape[-1]
    # computed as [4H, A] (not the transpose of [A, 4H]): the gate fusion reads them
    # along A, and a transposed read is a strided gather per vector
    rows = matmul(params.w_in[:m].T, fwd_in.T, dtype)  # [4H, A]
    cols = matmul(params.w_in[m:].T, bwd_in.T, dtype)  # [4H, B]
    if fused:
        state = kernel.lstm_update_grid_fused(params, state, rows, cols)
    else:  # CPUs: a matmul for the recurrent term; accelerators: one fused elementwise pass
        state = jax.lax.platform_dependent(
            rows,
            cols,
            cpu=lambda r, c: lstm_update_grid(params, state, r[:, None, :] + c[:, :, None], dtype),
            default=lambda r, c: lstm_update_grid_elementwise(params, state, r, c, dtype),
        )
    fwd, _ = messages(params, state.h.mean(axis=2).T, False, dtype)  # [B, m]
    _, bwd = messages(params, state.h.mean(axis=1).T, False, dtype)  # [A, m]
    return state, fwd, bwd


def forward_output(
    params: CellParams, h: jax.Array, layer_norm: bool = False, dtype: str = "float32"
) -> jax.Array:
    """The layer's forward output ``[B, m]`` for hidden states ``h`` ``[H, B, A]``."""
    if layer_norm:
        fwd, _ = messages(params, jnp.moveaxis(h, 0, -1), True, dtype)  # [B, A, m]
        return fwd.mean(axis=1)
    fwd, _ = messages(params, h.mean(axis=2).T, False, dtype)
    return fwd


def dense(
    params,
    state,
    fwd_in,
    bwd_in,
    layer_norm: bool = False,
    impl: str = "auto",
    dtype: str = "float32",
):
    """Dispatch to the fast path when it is valid (``impl='auto'``) or as asked (``'fused'``:
    the fast path with its LSTM update on the CPU kernel); ``dtype`` is the matmul input
    dtype (:func:`~vsml_jax.vsml.cell.matmul`)."""
    if impl == "auto":
        impl = "direct" if layer_norm else "fast"
    if impl in ("fast", "fused"):
        return dense_fast(params, state, fwd_in, bwd_in, layer_norm, dtype, impl == "fused")
    if impl == "direct":
        return dense_direct(params, state, fwd_in, bwd_in, layer_norm, dtype)
    raise ValueError(f"unknown layer impl {impl!r}; use 'auto', 'fast', 'fused' or 'direct'")
