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

from collections.abc import Callable

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


MetaStep = Callable[
    [PyTree, optax.OptState, jax.Array, jax.Array, jax.Array],
    tuple[PyTree, optax.OptState, jax.Array],
]


def make_grad_meta_step(
    learner: Learner,
    optimizer: optax.GradientTransformation,
    num_classes: int,
    remat: bool = True,
) -> MetaStep:
    """A jitted meta-training step by backprop through the unrolled episodes.

    Returns ``step(meta_params, opt_state, xs [B,T,D], labels [B,T], key) ->
    (meta_params, opt_state, loss)``, where ``loss`` is the batch's mean online
    cross-entropy *before* the update and ``opt_state = optimizer.init(meta_params)``.
    ``key`` is split into one key per episode (the learner's ``init`` key).
    """
    if remat:
        learner = with_remat(learner)
    loss_and_grad = jax.value_and_grad(
        lambda mp, xs, labels, key: batch_episode_loss(learner, mp, xs, labels, key, num_classes)
    )

    @jax.jit
    def step(meta_params, opt_state, xs, labels, key):
        loss, grads = loss_and_grad(meta_params, xs, labels, key)
        updates, opt_state = optimizer.update(grads, opt_state, meta_params)
        meta_params = optax.apply_updates(meta_params, updates)
        return meta_params, opt_state, loss

    return step


@struct.dataclass
class GradState:
    """Meta-gradient training state, laid out like an ES state: a flat ``mean`` vector
    (the meta-parameters, raveled) and the optimizer state over it."""

    mean: jax.Array
    opt_state: optax.OptState


def make_grad_train_block(
    learner: Learner,
    optimizer: optax.GradientTransformation,
    unravel: Callable[[jax.Array], PyTree],
    data,
    spec,
    num_classes: int,
    batch_size: int,
    num_steps: int,
    remat: bool = True,
    mesh=None,
):
    """``block(state, base_key, start) -> (state, metrics)``: ``num_steps`` meta-gradient
    steps, each on a fresh batch of episodes sampled on device (step ``g`` uses
    ``fold_in(base_key, g)``), scanned in one program. With a mesh the episode batch
    is sharded over its devices. Non-finite losses or gradients skip the update."""
    from vsml_jax.data.episodes import sample_episodes
    from vsml_jax.meta.es import all_finite
    from vsml_jax.meta.sharding import pop_sharding

    if remat:
        learner = with_remat(learner)

    weights = getattr(spec, "loss_weights", None)  # e.g. a few-shot episode's queries

    def loss_fn(flat, xs, labels, key):
        return batch_episode_loss(learner, unravel(flat), xs, labels, key, num_classes, weights)

    def one_step(state: GradState, key):
        k_data, k_init = jax.random.split(key)
        xs, labels = sample_episodes(k_data, data, spec, batch_size)
        if mesh is not None:
            xs, labels = jax.lax.with_sharding_constraint((xs, labels), pop_sharding(mesh))
        loss, grad = jax.value_and_grad(loss_fn)(state.mean, xs, labels, k_init)
        ok = jnp.isfinite(loss) & jnp.all(jnp.isfinite(grad))
        updates, opt_state = optimizer.update(jnp.where(ok, grad, 0.0), state.opt_state, state.mean)
        new = GradState(mean=optax.apply_updates(state.mean, updates), opt_state=opt_state)
        ok = ok & all_finite(new)
        new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
        nan = jnp.float32(jnp.nan)
        metrics = {
            "meta_loss": loss,
            "meta_loss_std": nan,
            "meta_loss_min": nan,
            "meta_loss_max": nan,
            "sigma": nan,
            "grad_norm": jnp.linalg.norm(grad),
            "nonfinite": (~ok).astype(jnp.int32),
            "skipped": (~ok).astype(jnp.int32),
        }
        return new, metrics

    def block(state, base_key, start):
        keys = jax.vmap(lambda g: jax.random.fold_in(base_key, g))(start + jnp.arange(num_steps))
        return jax.lax.scan(one_step, state, keys)

    return block


def init_grad_state(optimizer: optax.GradientTransformation, flat: jax.Array) -> GradState:
    return GradState(mean=flat, opt_state=optimizer.init(flat))
