"""Learning-algorithm cloning (paper §4.1): meta-train the VSML cell to implement backprop.

The shared cell is trained by gradient descent (Adam, backprop through the unrolled
ticks, each tick rematerialised) to reproduce, tick by tick, the explicit online SGD of
:mod:`vsml_jax.vsml.backprop` on random sequences:

- each of ``cells`` independent cells starts from VSML's initial state (``h = 0``, the
  leading half of ``c`` random) and the reference starts from the weights read out of
  that state, ``(w, beta) = c @ readout.T``, where ``readout`` ``[2, H]`` is trained
  with the cell: a learned linear direction of the cell state holds the weight and
  another the bias share;
- the tick schedule is the one a VSML layer sees inside
  ``network_step(backward_pass=True, forward_sweep_feedback=False)``: per step,
  ``num_ticks`` ticks reading ``(x_t, 0)`` (the forward sweep), then ``num_ticks``
  ticks reading ``(x_t, e_t)`` (the backward sweep of the next step);
- inputs ``x_t``, errors ``e_t`` and initial weight scales are random, with a scale
  drawn per cell (log-uniform in the configured ranges), so one clone covers input
  layers (standardised inputs), hidden layers (small activations) and output layers
  (softmax errors) alike;
- the cloning loss, per tick, is the mean squared difference of the cell's forward
  message, backward message and read-out ``(w, beta)`` from the reference's (all
  message channels; the reference uses channel 0 and zeros elsewhere), each term
  divided by its target's mean square over the batch. Per-cell messages are compared,
  which bounds the layer messages' error: the layer means are means of these.

No teacher forcing: the cell runs freely from its own state for the whole unroll, so
errors that accumulate (a leaking forget gate, drifting weights) are penalised.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from vsml_jax.vsml.backprop import reference_cell
from vsml_jax.vsml.cell import CellConfig, CellParams, CellState, cell_step, init_cell_params


@dataclasses.dataclass(frozen=True)
class CloneConfig:
    """What is cloned (``lr``, ``bias_lr``) and how the cloning is trained."""

    lr: float = 1.0  # the cloned SGD's learning rate (scale convention: vsml/backprop.py)
    bias_lr: float = 0.03
    num_ticks: int = 1  # micro-ticks per sweep of the VSML network that runs the clone
    readout_scale: float = 8.0  # initial |readout|: w = readout_scale * (c_0 - c_1)
    cells: int = 512  # independent cells (random sequences) per training batch
    steps: int = 40  # online steps per unroll (2 * num_ticks ticks each)
    x_std: tuple[float, float] = (0.1, 2.0)  # log-uniform per-cell input scale
    e_std: tuple[float, float] = (0.01, 0.5)  # log-uniform per-cell error scale
    c_std: tuple[float, float] = (0.1, 0.35)  # initial random cell-state std (1/sqrt(A))
    train_steps: int = 3000
    meta_lr: float = 3e-3
    clip_norm: float = 1.0
    remat: bool = True

    def __post_init__(self):
        for name in ("cells", "steps", "train_steps", "num_ticks"):
            if getattr(self, name) < 1:
                raise ValueError(f"clone.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("x_std", "e_std", "c_std"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"clone.{name} must be 0 < low <= high, got {(lo, hi)}")


class CloneParams(NamedTuple):
    """What cloning trains: the shared cell (V_M) and the read-out of ``(w, beta)``."""

    cell: CellParams
    readout: jax.Array  # [2, H]


class CloneBatch(NamedTuple):
    """Random sequences for ``cells`` cells: inputs/errors ``[T, N]``, initial ``c`` ``[N, H]``."""

    x: jax.Array
    e: jax.Array
    c0: jax.Array


def init_clone_params(key: jax.Array, cell_cfg: CellConfig, cfg: CloneConfig) -> CloneParams:
    """Paper-style cell initialisation; read-out ``readout_scale * (c_0 - c_1)`` for ``w``
    and ``readout_scale * (c_2 - c_3)`` for ``beta`` (a starting point; it is trained)."""
    if cell_cfg.hidden < 4:
        raise ValueError("cloning needs cell.hidden >= 4")
    readout = jnp.zeros((2, cell_cfg.hidden), jnp.float32)
    s = cfg.readout_scale
    readout = readout.at[0, 0].set(s).at[0, 1].set(-s).at[1, 2].set(s).at[1, 3].set(-s)
    return CloneParams(cell=init_cell_params(key, cell_cfg), readout=readout)


def _log_uniform(key, shape, lo_hi):
    lo, hi = lo_hi
    return jnp.exp(jax.random.uniform(key, shape, minval=jnp.log(lo), maxval=jnp.log(hi)))


def sample_batch(key: jax.Array, cell_cfg: CellConfig, cfg: CloneConfig) -> CloneBatch:
    """Random inputs, errors and initial cell states (VSML's init: the leading
    ``num_random`` units of ``c`` truncated-normal), scales drawn per cell."""
    N, T, H = cfg.cells, cfg.steps, cell_cfg.hidden
    k = jax.random.split(key, 6)
    x = _log_uniform(k[0], (N,), cfg.x_std) * jax.random.normal(k[1], (T, N))
    e = _log_uniform(k[2], (N,), cfg.e_std) * jax.random.normal(k[3], (T, N))
    std = _log_uniform(k[4], (N, 1), cfg.c_std)
    noise = std * jax.random.truncated_normal(k[5], -2.0, 2.0, (N, cell_cfg.num_random))
    c0 = jnp.concatenate([noise, jnp.zeros((N, H - cell_cfg.num_random))], -1)
    return CloneBatch(x=x, e=e, c0=c0)


def _embed(v, m):
    return jnp.zeros((*v.shape, m), v.dtype).at[..., 0].set(v)


def unroll(params: CloneParams, batch: CloneBatch, cell_cfg: CellConfig, cfg: CloneConfig):
    """Run the cells and the reference side by side over the batch's tick schedule.

    Returns per-tick ``(pred, target)`` dicts with keys ``fwd``/``bwd`` (``[K, N, m]``)
    and ``w``/``beta`` (``[K, N]``), ``K = 2 * num_ticks * steps`` ticks.
    """
    m = cell_cfg.message
    ln = cell_cfg.layer_norm
    tick = jax.vmap(lambda s, f, b: cell_step(params.cell, s, f, b, ln))
    if cfg.remat:
        tick = jax.checkpoint(tick, prevent_cse=False)
    N = batch.c0.shape[0]
    state = CellState(h=jnp.zeros_like(batch.c0), c=batch.c0)
    w0, beta0 = batch.c0 @ params.readout[0], batch.c0 @ params.readout[1]
    # the reference starts from the read-out of the initial state, not trained through
    ref0 = jax.lax.stop_gradient((w0, beta0))
    phase_e = jnp.stack([jnp.zeros_like(batch.e), batch.e], 1)  # [T, 2, N]: forward, backward
    xs = jnp.repeat(batch.x[:, None], 2, 1)
    schedule = (xs.reshape(-1, N), phase_e.reshape(-1, N))
    schedule = jax.tree.map(lambda a: jnp.repeat(a, cfg.num_ticks, 0), schedule)

    def body(carry, inputs):
        state, (w, beta) = carry
        x, e = inputs
        state, fwd, bwd = tick(state, _embed(x, m), _embed(e, m))
        w, beta, f_ref, b_ref = reference_cell(w, beta, x, e, cfg.lr, cfg.bias_lr)
        pred = {"fwd": fwd, "bwd": bwd, "w": state.c @ params.readout[0]}
        pred["beta"] = state.c @ params.readout[1]
        target = {"fwd": _embed(f_ref, m), "bwd": _embed(b_ref, m), "w": w, "beta": beta}
        return (state, (w, beta)), (pred, target)

    _, (pred, target) = jax.lax.scan(body, (state, ref0), schedule)
    return pred, target


def clone_losses(pred: dict, target: dict) -> dict:
    """Per-term mean squared error, each divided by its target's mean square."""
    out = {}
    for k in ("fwd", "bwd", "w", "beta"):
        t = jax.lax.stop_gradient(target[k])
        scale = jnp.mean(t[..., 0] ** 2 if t.ndim == 3 else t**2) + 1e-8
        out[k] = jnp.mean(jnp.sum((pred[k] - t) ** 2, -1) if t.ndim == 3 else (pred[k] - t) ** 2)
        out[k] = out[k] / scale
    return out


def clone_loss(params, batch, cell_cfg, cfg) -> tuple[jax.Array, dict]:
    terms = clone_losses(*unroll(params, batch, cell_cfg, cfg))
    return sum(terms.values()), terms


class CloneState(NamedTuple):
    params: CloneParams
    opt_state: optax.OptState


def make_optimizer(cfg: CloneConfig) -> optax.GradientTransformation:
    opt = optax.adam(cfg.meta_lr)
    if cfg.clip_norm:
        opt = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
    return optax.apply_if_finite(opt, max_consecutive_errors=20)


def init_clone_state(key, cell_cfg: CellConfig, cfg: CloneConfig) -> CloneState:
    params = init_clone_params(key, cell_cfg, cfg)
    return CloneState(params, make_optimizer(cfg).init(params))


def make_clone_block(cell_cfg: CellConfig, cfg: CloneConfig, num_steps: int):
    """``block(state, base_key, start) -> (state, metrics)``: ``num_steps`` cloning steps,
    each on a fresh random batch (step ``g`` uses ``fold_in(base_key, g)``), in one scan."""
    optimizer = make_optimizer(cfg)
    grad_fn = jax.value_and_grad(clone_loss, has_aux=True)

    def one(state: CloneState, key):
        batch = sample_batch(key, cell_cfg, cfg)
        (loss, terms), grads = grad_fn(state.params, batch, cell_cfg, cfg)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"clone_loss": loss, **{f"clone_{k}": v for k, v in terms.items()}}
        metrics["grad_norm"] = optax.global_norm(grads)
        return CloneState(params, opt_state), metrics

    def block(state, base_key, start):
        keys = jax.vmap(lambda g: jax.random.fold_in(base_key, g))(start + jnp.arange(num_steps))
        return jax.lax.scan(one, state, keys)

    return block
