"""Learning-algorithm cloning (paper §4.1): meta-train the VSML cell to implement backprop.

The shared cell is trained by gradient descent (Adam, backprop through the unrolled
ticks, each tick rematerialised) to reproduce, tick by tick, the explicit online SGD of
:mod:`vsml_jax.vsml.backprop` on random sequences:

- a batch is ``grids`` VSML layers of ``A x B`` cells. Cell (a, b) reads the layer's
  input ``x_a`` and error ``e_b``, as inside a network, so the messages' grid means
  (what the next layer really receives) can be compared with the reference's;
- the weights ``(w, beta) = c @ readout.T`` are read out of the cell state, where
  ``readout`` ``[2, H]`` is trained with the cell: a learned linear direction of the
  cell state holds the weight and another the bias share;
- the tick schedule is the one a layer sees inside ``network_step(backward_pass=True,
  forward_sweep_feedback=False)``: per step, ``num_ticks`` ticks reading ``(x_t, 0)``
  (the forward sweep), then ``num_ticks`` ticks reading ``(x_t, e_t)`` (the backward
  sweep of the next step);
- inputs, errors and initial weight scales are random with a scale drawn per layer
  (log-uniform in the configured ranges), so one clone covers input layers
  (standardised inputs), hidden layers (small activations) and output layers (softmax
  errors) alike;
- **long horizons, cheaply.** Unrolls are ``steps`` long, but the cells carry their state
  from one training step to the next (a pool; each layer restarts from VSML's initial
  state with probability ``reset_prob`` per step), so training sees the states and
  weight magnitudes of episodes thousands of steps long. At the start of every unroll
  the reference is re-synchronised to the weights the cells hold (a form of teacher
  forcing: each unroll measures the drift from there), and gradients are truncated at
  the unroll boundary;
- the loss, per tick, is the squared error of the per-cell and the layer (grid-mean)
  forward and backward messages (all channels; the reference uses channel 0 and zeros
  elsewhere), each divided by its target's mean square, plus that of the read-out
  ``(w, beta)``, divided by the mean square of their change since the unroll began plus
  ``weight_floor`` times their own (a small floor keeps a slow leak of a large stored
  weight from hiding behind its size).
  Layer terms matter: an error common to the cells of a row or column survives the
  grid mean, while the signal ``tanh(x_a) w_ab`` partly cancels in it.

With ``grid=(1, 1)`` and ``reset_prob=1`` this reduces to independent cells started
afresh for every unroll (the CPU default of ``experiments/la_cloning/configs/la_cloning.yaml``).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from vsml_jax.meta.base import Trainer
from vsml_jax.vsml.backprop import reference_cell
from vsml_jax.vsml.cell import (
    CellConfig,
    CellParams,
    CellState,
    init_cell_params,
    lstm_update,
    random_units,
)
from vsml_jax.vsml.cell import messages as cell_messages


@dataclasses.dataclass(frozen=True)
class CloneConfig:
    """What is cloned (``lr``, ``bias_lr``) and how the cloning is trained."""

    lr: float = 1.0  # the cloned SGD's learning rate (scale convention: vsml/backprop.py)
    bias_lr: float = 0.03
    num_ticks: int = 1  # micro-ticks per sweep of the VSML network that runs the clone
    readout_scale: float = 8.0  # starting read-out: w = readout_scale * (c_0 - c_1)
    # normaliser of the w/beta error: mean square of their change over the unroll plus
    # this share of their own mean square (1: the weights' own scale)
    weight_floor: float = 1.0
    grids: int = 4  # layers per training batch
    grid: tuple[int, int] = (32, 10)  # (A, B) of each layer
    steps: int = 40  # online steps per unroll (2 * num_ticks ticks each)
    x_std: tuple[float, float] = (0.1, 2.0)  # log-uniform per-layer input scale
    e_std: tuple[float, float] = (0.01, 0.5)  # log-uniform per-layer error scale
    c_std: tuple[float, float] = (0.1, 0.35)  # initial random cell-state std (1/sqrt(A))
    reset_prob: float = 0.02  # per training step: a layer restarts from a fresh state
    train_steps: int = 3000
    meta_lr: float = 3e-3
    final_lr_fraction: float = 0.1  # cosine decay of meta_lr down to this fraction
    clip_norm: float = 1.0
    remat: bool = True

    def __post_init__(self):
        for name in ("grids", "steps", "train_steps", "num_ticks"):
            if getattr(self, name) < 1:
                raise ValueError(f"clone.{name} must be >= 1, got {getattr(self, name)}")
        if min(self.grid) < 1:
            raise ValueError(f"clone.grid must be positive, got {self.grid}")
        if not 0.0 < self.reset_prob <= 1.0:
            raise ValueError(f"clone.reset_prob must be in (0, 1], got {self.reset_prob}")
        for name in ("x_std", "e_std", "c_std"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"clone.{name} must be 0 < low <= high, got {(lo, hi)}")


class CloneParams(NamedTuple):
    """What cloning trains: the shared cell (V_M) and the read-out of ``(w, beta)``."""

    cell: CellParams
    readout: jax.Array  # [2, H]


class CloneBatch(NamedTuple):
    """Random sequences for ``G`` layers: inputs ``[T, G, A]``, errors ``[T, G, B]``."""

    x: jax.Array
    e: jax.Array


def initial_readout(cell_cfg: CellConfig, cfg: CloneConfig) -> jax.Array:
    """The starting read-out (it is trained): ``w = readout_scale * (c_0 - c_1)`` and
    ``beta = readout_scale * (c_2 - c_3)``, units of the random half of VSML's initial
    state, which so gives the initial weights."""
    if cell_cfg.num_random < 4:
        raise ValueError("cloning needs >= 4 randomly initialised cell units")
    if cell_cfg.layer_norm:
        raise ValueError("cloning needs linear message heads (cell.layer_norm=false)")
    s = cfg.readout_scale
    readout = jnp.zeros((2, cell_cfg.hidden), jnp.float32)
    return readout.at[0, 0].set(s).at[0, 1].set(-s).at[1, 2].set(s).at[1, 3].set(-s)


def init_clone_params(key: jax.Array, cell_cfg: CellConfig, cfg: CloneConfig) -> CloneParams:
    """Paper-style cell initialisation and the starting read-out (:func:`initial_readout`)."""
    readout = initial_readout(cell_cfg, cfg)
    return CloneParams(cell=init_cell_params(key, cell_cfg), readout=readout)


def _log_uniform(key, shape, lo_hi):
    lo, hi = lo_hi
    return jnp.exp(jax.random.uniform(key, shape, minval=jnp.log(lo), maxval=jnp.log(hi)))


def sample_batch(key: jax.Array, cfg: CloneConfig) -> CloneBatch:
    """Random inputs and errors, with a scale drawn per layer (log-uniform)."""
    G, T, (A, B) = cfg.grids, cfg.steps, cfg.grid
    k = jax.random.split(key, 4)
    x = _log_uniform(k[0], (G, 1), cfg.x_std) * jax.random.normal(k[1], (T, G, A))
    e = _log_uniform(k[2], (G, 1), cfg.e_std) * jax.random.normal(k[3], (T, G, B))
    return CloneBatch(x=x, e=e)


def fresh_states(key, cell_cfg: CellConfig, cfg: CloneConfig) -> CellState:
    """VSML's initial cell states ``[G, A, B, H]`` (``h = 0``, the leading ``num_random``
    units of ``c`` truncated-normal) with a std drawn per layer from ``c_std``."""
    G, (A, B), H = cfg.grids, cfg.grid, cell_cfg.hidden
    r = cell_cfg.num_random
    k_std, k_noise = jax.random.split(key)
    std = _log_uniform(k_std, (G, 1, 1, 1), cfg.c_std)
    noise = random_units(k_noise, cell_cfg, (G, A, B), std)
    c = jnp.concatenate([noise, jnp.zeros((G, A, B, H - r))], -1)
    return CellState(h=jnp.zeros((G, A, B, H), jnp.float32), c=c)


def readout(params: CloneParams, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(w, beta)`` held by cell states ``c`` ``[..., H]``."""
    return c @ params.readout[0], c @ params.readout[1]


def layer_tick(params: CellParams, state: CellState, x: jax.Array, e: jax.Array):
    """One tick of ``G`` layers reading ``x`` ``[G, A]`` and ``e`` ``[G, B]`` in channel 0:
    the new state and the per-cell ``(fwd, bwd)`` messages ``[G, A, B, m]`` (their grid
    means are :func:`vsml_jax.vsml.layers.dense_fast`'s outputs)."""
    m = params.w_fwd.shape[-1]
    rows = x[..., None] * params.w_in[0]  # [G, A, 4H]: channel 0 of the forward message
    cols = e[..., None] * params.w_in[m]  # [G, B, 4H]: channel 0 of the backward message
    state = lstm_update(params, state, rows[:, :, None, :] + cols[:, None, :, :])
    fwd, bwd = cell_messages(params, state.h, False)
    return state, fwd, bwd


def _embed(v, m):
    return jnp.zeros((*v.shape, m), v.dtype).at[..., 0].set(v)


def unroll(params: CloneParams, state: CellState, batch: CloneBatch, cfg: CloneConfig):
    """Run the layers from ``state`` and the reference from the layers' read-out side by
    side over the batch's tick schedule.

    Returns ``(pred, target, final_state)``: per tick, per-cell ``fwd``/``bwd`` messages
    ``[K, G, A, B, m]``, layer messages ``fwd_layer`` ``[K, G, B, m]`` and ``bwd_layer``
    ``[K, G, A, m]``, and ``w``/``beta`` ``[K, G, A, B]``, with ``K = 2 * num_ticks *
    steps``; ``target`` also holds the read-out at the start (``w0``, ``beta0``).
    """
    m = params.cell.w_fwd.shape[-1]
    tick = lambda s, x, e: layer_tick(params.cell, s, x, e)  # noqa: E731
    if cfg.remat:
        tick = jax.checkpoint(tick, prevent_cse=False)
    ref0 = jax.lax.stop_gradient(readout(params, state.c))
    zeros = jnp.zeros_like(batch.e)
    # per step: forward ticks with zero error, then backward ticks with the error
    xs = jnp.repeat(jnp.stack([batch.x, batch.x], 1), cfg.num_ticks, 1)
    es = jnp.repeat(jnp.stack([zeros, batch.e], 1), cfg.num_ticks, 1)
    schedule = (xs.reshape(-1, *batch.x.shape[1:]), es.reshape(-1, *batch.e.shape[1:]))

    def body(carry, inputs):
        state, (w, beta) = carry
        x, e = inputs
        state, fwd, bwd = tick(state, x, e)
        w, beta, f_ref, b_ref = reference_cell(
            w, beta, x[:, :, None], e[:, None, :], cfg.lr, cfg.bias_lr
        )
        w_hat, beta_hat = readout(params, state.c)
        pred = {
            "fwd": fwd,
            "bwd": bwd,
            "fwd_layer": fwd.mean(1),
            "bwd_layer": bwd.mean(2),
            "w": w_hat,
            "beta": beta_hat,
        }
        target = {
            "fwd": _embed(f_ref, m),
            "bwd": _embed(b_ref, m),
            "fwd_layer": _embed(f_ref.mean(1), m),
            "bwd_layer": _embed(b_ref.mean(2), m),
            "w": w,
            "beta": beta,
        }
        return (state, (w, beta)), (pred, target)

    (final, _), (pred, target) = jax.lax.scan(body, (state, ref0), schedule)
    target["w0"], target["beta0"] = ref0
    return pred, target, final


MESSAGE_TERMS = ("fwd", "bwd", "fwd_layer", "bwd_layer")


def clone_losses(pred: dict, target: dict, weight_floor: float = 1.0) -> dict:
    """Per-term squared error over a normaliser (see the module docstring)."""
    out = {}
    for k in MESSAGE_TERMS:
        t = jax.lax.stop_gradient(target[k])
        err = jnp.mean(jnp.sum((pred[k] - t) ** 2, -1))
        out[k] = err / (jnp.mean(t[..., 0] ** 2) + 1e-8)
    for k in ("w", "beta"):
        t = jax.lax.stop_gradient(target[k])
        change = jnp.mean((t - target[f"{k}0"]) ** 2)
        norm = change + weight_floor * jnp.mean(t**2) + 1e-8
        out[k] = jnp.mean((pred[k] - t) ** 2) / norm
    return out


def clone_loss(params, state, batch, cfg):
    pred, target, final = unroll(params, state, batch, cfg)
    terms = clone_losses(pred, target, cfg.weight_floor)
    return sum(terms.values()), (terms, final)


class CloneState(NamedTuple):
    """Training state: the cloned parameters, Adam's state, and the pool of layer states
    that the next unroll continues from (so training sees long-horizon states)."""

    params: CloneParams
    opt_state: optax.OptState
    pool: CellState


def make_optimizer(cfg: CloneConfig) -> optax.GradientTransformation:
    schedule = optax.cosine_decay_schedule(cfg.meta_lr, cfg.train_steps, cfg.final_lr_fraction)
    opt = optax.adam(schedule)
    if cfg.clip_norm:
        opt = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
    return optax.apply_if_finite(opt, max_consecutive_errors=20)


def init_clone_state(key, cell_cfg: CellConfig, cfg: CloneConfig) -> CloneState:
    """A fresh training state: paper-style cell, starting read-out, fresh layer pool."""
    k_params, k_pool = jax.random.split(key)
    cell = init_cell_params(k_params, cell_cfg)
    return make_clone_trainer(cell_cfg, cfg, 1).init((cell,), k_pool)


def make_clone_block(cell_cfg: CellConfig, cfg: CloneConfig, num_steps: int):
    """``block(state, base_key, start) -> (state, metrics)``: ``num_steps`` cloning steps,
    each on fresh random inputs and errors (step ``g`` uses ``fold_in(base_key, g)``),
    continuing the pooled layer states (a ``reset_prob`` share restarts), in one scan.
    ``metrics`` has one row per step: ``meta_loss`` (the cloning loss), its terms
    ``clone_<term>``, ``skipped``, ``grad_norm`` and ``pool_abs_w``."""
    optimizer = make_optimizer(cfg)
    grad_fn = jax.value_and_grad(clone_loss, has_aux=True)

    def one(state: CloneState, key):
        k_batch, k_fresh, k_reset = jax.random.split(key, 3)
        batch = sample_batch(k_batch, cfg)
        reset = jax.random.bernoulli(k_reset, cfg.reset_prob, (cfg.grids, 1, 1, 1))
        fresh = fresh_states(k_fresh, cell_cfg, cfg)
        start = jax.tree.map(lambda f, p: jnp.where(reset, f, p), fresh, state.pool)
        (loss, (terms, final)), grads = grad_fn(state.params, start, batch, cfg)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # a layer whose state went non-finite restarts
        ok = jnp.isfinite(final.c).all((1, 2, 3), keepdims=True)
        ok &= jnp.isfinite(final.h).all((1, 2, 3), keepdims=True)
        final = jax.lax.stop_gradient(final)
        pool = jax.tree.map(lambda f, p: jnp.where(ok, p, f), fresh, final)
        # the loop's names (vsml_jax.meta.base): the loss is the meta-loss, and apply_if_finite
        # kept the previous parameters where the update was not finite
        metrics = {"meta_loss": loss, **{f"clone_{k}": v for k, v in terms.items()}}
        metrics["skipped"] = jnp.logical_not(opt_state.last_finite).astype(jnp.int32)
        metrics["grad_norm"] = optax.global_norm(grads)
        metrics["pool_abs_w"] = jnp.abs(readout(params, pool.c)[0]).mean()
        return CloneState(params, opt_state, pool), metrics

    def block(state, base_key, start):
        keys = jax.vmap(lambda g: jax.random.fold_in(base_key, g))(start + jnp.arange(num_steps))
        return jax.lax.scan(one, state, keys)

    return block


def make_clone_trainer(cell_cfg: CellConfig, cfg: CloneConfig, steps_per_block: int) -> Trainer:
    """Cloning as a :class:`~vsml_jax.meta.base.Trainer`, for :func:`vsml_jax.train.train`.

    ``init((cell,), key)`` starts from the VSML learner's meta-parameters ``(cell,)``, the
    starting read-out (:func:`initial_readout`) and a pool of fresh layer states drawn
    with ``key``; ``block`` is :func:`make_clone_block`'s; ``mean(state)`` is ``(cell,)``,
    the VSML learner's meta-parameters. The read-out stays in the state
    (``state.params.readout``; in a checkpoint ``raw["state"]["params"]["readout"]``).
    """
    optimizer = make_optimizer(cfg)

    def init(meta_params, key) -> CloneState:
        (cell,) = meta_params
        params = CloneParams(cell=cell, readout=initial_readout(cell_cfg, cfg))
        return CloneState(params, optimizer.init(params), fresh_states(key, cell_cfg, cfg))

    def mean(state: CloneState):
        return (state.params.cell,)

    block = make_clone_block(cell_cfg, cfg, steps_per_block)
    return Trainer(init, block, mean, steps_per_block, cross_entropy=False)


def forward_message_error(
    cell: CellParams,
    readout_rows: jax.Array,
    key: jax.Array,
    cell_cfg: CellConfig,
    grid: tuple[int, int],
    num_layers: int = 16,
) -> jax.Array:
    """Relative squared error of fresh layers' forward message (the grid mean, channel 0,
    one tick from VSML's initial state on ``x ~ N(0, 1)``, no error) against
    ``mean_a tanh(x_a) w_ab + b_b`` of the weights read out of their cells."""
    from vsml_jax.vsml.backprop import GridWeights, reference_tick

    cfg = CloneConfig(grids=num_layers, grid=grid)
    k_state, k_x = jax.random.split(key)
    cells = fresh_states(k_state, cell_cfg, cfg)
    A, B = grid
    x = jax.random.normal(k_x, (num_layers, A))
    _, fwd, _ = layer_tick(cell, cells, x, jnp.zeros((num_layers, B)))
    y = fwd.mean(1)  # [G, B, m]
    w, beta = cells.c @ readout_rows[0], cells.c @ readout_rows[1]
    zero = jnp.zeros((B,))
    y_ref = jax.vmap(lambda w, b, x: reference_tick(GridWeights(w, b), x, zero, 1.0, 0.0)[1])(
        w, beta, x
    )
    err = jnp.sum((y - _embed(y_ref, y.shape[-1])) ** 2, -1)
    return jnp.mean(err) / jnp.mean(y_ref**2)
