"""Gradient-based meta-training: backpropagation through the unrolled episode.

The meta-objective is the mean online cross-entropy of a batch of episodes
(:func:`vsml_jax.episode.batch_episode_loss`), differentiated with respect to the
meta-parameters through every step of the episode (as in Hochreiter et al. 2001,
Andrychowicz et al. 2016 and MAML, Finn et al. 2017). This works for every learner
whose ``step`` is differentiable (learned_optimizer, maml, meta_rnn, hebbian, fwp,
fw_memory, synaptic_rule, ...); VSML itself is meta-trained by ES in
:mod:`vsml_jax.meta.es`.

With ``remat=True`` the learner's step is wrapped in :func:`jax.checkpoint`, so the
backward pass stores only the per-step learner state (the scan carry) and recomputes
each step's intermediate activations, which lets long unrolls fit in memory.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from vsml_jax.episode import batch_episode_loss
from vsml_jax.learners.base import Learner, PyTree


def with_remat(learner: Learner) -> Learner:
    """The same learner with its ``step`` rematerialised in the backward pass."""
    # prevent_cse=False is safe (and faster) because the step runs inside lax.scan.
    return learner._replace(step=jax.checkpoint(learner.step, prevent_cse=False))


@struct.dataclass
class GradState:
    """Meta-gradient training state: the meta-parameter pytree and the optimizer state."""

    params: PyTree
    opt_state: optax.OptState


class RelativeScaleState(NamedTuple):
    """The per-parameter step scale ``|params at init| + floor``."""

    scale: PyTree


def scale_by_initial_magnitude(floor: float) -> optax.GradientTransformation:
    """Multiply each update by ``|p0| + floor``, ``p0`` the parameters at ``init``.

    After Adam (whose step is about ``lr`` whatever a parameter's size) this makes the
    step relative: a parameter moves by about ``lr * (|p0| + floor)``. That is Adam on
    ``delta`` in ``p = p0 + (|p0| + floor) * delta``, a trust region in units of each
    parameter's own scale, for starting points (such as the constructed backprop V_M of
    :func:`vsml_jax.vsml.backprop.backprop_cell`) whose entries span many orders of
    magnitude.
    """

    def init(params):
        return RelativeScaleState(
            scale=jax.tree_util.tree_map(lambda p: jnp.abs(p) + floor, params)
        )

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda u, s: u * s, updates, state.scale), state

    return optax.GradientTransformation(init, update)


def make_optimizer(
    lr: float, clip_norm: float = 0.0, relative_floor: float = 0.0
) -> optax.GradientTransformation:
    """Adam (after global-norm clipping when ``clip_norm``), skipping non-finite updates.

    ``optax.apply_if_finite`` leaves parameters and moments untouched when a gradient is
    not finite; the training loop, not the optimizer, decides when to give up
    (``max_skipped``), so it never applies a non-finite update itself. With
    ``relative_floor > 0`` each step is scaled by the parameter's initial magnitude
    (:func:`scale_by_initial_magnitude`), so ``lr`` is a relative step size.
    """
    parts = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
    parts.append(optax.adam(lr))
    if relative_floor:
        parts.append(scale_by_initial_magnitude(relative_floor))
    inner = parts[0] if len(parts) == 1 else optax.chain(*parts)
    return optax.apply_if_finite(inner, max_consecutive_errors=2**31 - 1)


def make_grad_train_block(
    learner: Learner,
    optimizer: optax.GradientTransformation,
    sample_batch,
    num_classes: int,
    num_steps: int,
    remat: bool = True,
    mesh=None,
    weights=None,
):
    """``block(state, base_key, start, *args) -> (state, metrics)``: ``num_steps``
    meta-gradient steps, each on a fresh batch ``sample_batch(key, step, *args) -> (xs [B, T,
    D], labels [B, T])`` (``args``, e.g. the dataset, are inputs of the compiled program)
    (the loss of step ``t`` weighted by ``weights [T]`` if given, e.g. a few-shot
    episode's queries only)
    (step ``g`` uses ``fold_in(base_key, g)``), scanned in one program. With a mesh the
    episode batch is sharded over its devices. ``optimizer`` must skip non-finite updates
    (:func:`make_optimizer`); a non-finite loss counts as a non-finite gradient."""
    from vsml_jax.runtime.devices import pop_sharding

    if remat:
        learner = with_remat(learner)

    def loss_fn(params, xs, labels, key):
        return batch_episode_loss(learner, params, xs, labels, key, num_classes, weights)

    def one_step(state: GradState, key_step, *args):
        key, step = key_step
        k_data, k_init = jax.random.split(key)
        xs, labels = sample_batch(k_data, step, *args)
        if mesh is not None:
            xs, labels = jax.lax.with_sharding_constraint((xs, labels), pop_sharding(mesh))
        loss, grads = jax.value_and_grad(loss_fn)(state.params, xs, labels, k_init)
        grads = jax.tree.map(lambda g: jnp.where(jnp.isfinite(loss), g, jnp.nan), grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        new = GradState(params=optax.apply_updates(state.params, updates), opt_state=opt_state)
        metrics = {
            "meta_loss": loss,
            "grad_norm": optax.global_norm(grads),
            "skipped": (~opt_state.last_finite).astype(jnp.int32),
        }
        return new, metrics

    def block(state, base_key, start, *args):
        steps = start + jnp.arange(num_steps)
        keys = jax.vmap(lambda g: jax.random.fold_in(base_key, g))(steps)
        return jax.lax.scan(lambda state, ks: one_step(state, ks, *args), state, (keys, steps))

    return block


def grad_trainer(cfg, learner: Learner, data, spec, num_classes: int, mesh=None, curriculum=()):
    """Meta-gradients as a :class:`~vsml_jax.meta.base.Trainer` (``cfg`` a
    ``GradConfig``): blocks of ``cfg.steps_per_call`` steps on batches of
    ``cfg.batch_size`` episodes, easier tasks early if a ``curriculum`` is given
    (:func:`~vsml_jax.data.episodes.sample_episodes_at`)."""
    from vsml_jax.meta.base import Trainer

    if mesh is not None and cfg.batch_size % mesh.size:
        raise ValueError(
            f"grad.batch_size {cfg.batch_size} does not divide over {mesh.size} "
            f"devices; make it a multiple of {mesh.size}"
        )
    from vsml_jax.data.episodes import sample_episodes_at

    optimizer = make_optimizer(cfg.lr, cfg.clip_norm, cfg.relative_floor)
    block = make_grad_train_block(
        learner,
        optimizer,
        lambda key, step, data=data: sample_episodes_at(
            key, data, spec, cfg.batch_size, step, curriculum
        ),
        num_classes,
        cfg.steps_per_call,
        remat=cfg.remat,
        mesh=mesh,
        weights=getattr(spec, "loss_weights", None),
    )
    return Trainer(
        init=lambda params, key: GradState(params=params, opt_state=optimizer.init(params)),
        block=block,
        mean=lambda state: state.params,
        steps_per_block=cfg.steps_per_call,
        args=(data,),
    )
