"""Shared helpers for the learner tests: a tiny synthetic task family and protocol checks."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from evosax.algorithms import Open_ES

from vsml_jax.episode import batch_episode_loss, run_episode
from vsml_jax.learners.base import Learner, TaskSpec

D, C, T = 8, 3, 40

# The tests run tiny programs, so XLA's compile time dominates their runtime; compile
# without LLVM optimisations (about half the compile time) in the helpers below.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def fast_jit(fn, **kwargs):
    """``jax.jit`` with quick, unoptimised compilation (for tests only)."""
    return jax.jit(fn, compiler_options=FAST_COMPILE, **kwargs)


def _prototype_episodes(key, batch, length=T, input_dim=D, num_classes=C, noise=0.3):
    """Episodes of noisy class prototypes, prototypes drawn anew for every episode.

    Labels are uniform and prototypes random per episode, so no fixed predictor beats
    chance (loss ``log C``): lower loss requires learning within the episode.
    Returns ``xs [batch, length, input_dim]`` and ``labels [batch, length]``.
    """
    kp, ky, kn = jax.random.split(key, 3)
    protos = jax.random.normal(kp, (batch, num_classes, input_dim))
    labels = jax.random.randint(ky, (batch, length), 0, num_classes)
    xs = jnp.take_along_axis(protos, labels[..., None], axis=1)
    xs = xs + noise * jax.random.normal(kn, xs.shape)
    return xs, labels


# Jitted (episode generation runs op by op otherwise); ``_prototype_episodes`` inside jit.
prototype_episodes = fast_jit(_prototype_episodes, static_argnums=(1, 2, 3, 4, 5))


def batch_results(learner, meta_params, xs, labels, key, num_classes=C):
    keys = jax.random.split(key, xs.shape[0])
    run = lambda x, y, k: run_episode(learner, meta_params, x, y, k, num_classes)
    return fast_jit(jax.vmap(run))(xs, labels, keys)


def check_protocol(learner: Learner, input_dim=D, num_classes=C, length=12, batch=3):
    """Shapes via run_episode, jit + vmap over a population and a batch, determinism.

    Also checks that the meta-parameters are a pytree of float arrays (ES ravels it).
    """
    meta_params = initial_meta_params(learner, num_classes, input_dim)
    for leaf in jax.tree.leaves(meta_params):
        assert jnp.issubdtype(leaf.dtype, jnp.floating), leaf.dtype
    flat, _ = jax.flatten_util.ravel_pytree(meta_params)
    assert flat.ndim == 1

    xs, labels = prototype_episodes(jax.random.key(1), batch, length, input_dim, num_classes)
    keys = jax.random.split(jax.random.key(2), batch)
    pop = jax.tree.map(lambda a: jnp.stack([a, a]), meta_params)  # population of two

    @fast_jit
    def run(pop):
        episodes = lambda mp: jax.vmap(
            lambda x, y, k: run_episode(learner, mp, x, y, k, num_classes)
        )(xs, labels, keys)
        return jax.vmap(episodes, axis_size=2)(pop)

    res = run(pop)
    chex.assert_shape(res.logits, (2, batch, length, num_classes))
    chex.assert_shape((res.loss, res.accuracy), (2, batch, length))
    chex.assert_tree_all_finite(res)
    np.testing.assert_allclose(res.logits[0], res.logits[1], rtol=1e-5, atol=1e-6)
    again = run(pop)
    np.testing.assert_array_equal(np.asarray(res.logits), np.asarray(again.logits))
    return meta_params


# Meta-training helpers. Each meta-step draws fresh episodes, and the loss it reports is
# that of the current meta-parameters *before* they are updated on those episodes, so
# the returned loss curves are measured on held-out episodes (no extra compilation).


def es_meta_train(
    learner,
    meta_params,
    steps,
    key,
    batch=8,
    pop=32,
    lr=0.03,
    std=0.05,
    num_classes=C,
    input_dim=D,
    length=T,
):
    """OpenAI-ES (evosax) on the mean online loss; returns (mean, held-out loss per step)."""
    es = Open_ES(
        population_size=pop,
        solution=meta_params,
        optimizer=optax.adam(lr),
        std_schedule=optax.constant_schedule(std),
    )
    params = es.default_params

    def generation(state, k):
        ka, kd, ke, kt = jax.random.split(k, 4)
        xs, labels = _prototype_episodes(kd, batch, length, input_dim, num_classes)
        loss = lambda mp: batch_episode_loss(learner, mp, xs, labels, ke, num_classes)
        held_out = loss(es.get_mean(state))
        population, state = es.ask(ka, state, params)
        state, _ = es.tell(kt, population, jax.vmap(loss)(population), state, params)
        return state, held_out

    state = es.init(key, meta_params, params)
    run = fast_jit(lambda state: jax.lax.scan(generation, state, jax.random.split(key, steps)))
    state, losses = run(state)
    return es.get_mean(state), np.asarray(losses)


def grad_meta_train(
    learner,
    meta_params,
    steps,
    lr=0.01,
    batch=16,
    seed=0,
    remat=False,
    num_classes=C,
    input_dim=D,
    length=T,
    fast_compile=True,
):
    """Adam on the meta-gradient (the production block of ``vsml_jax.meta.grad``, all
    ``steps`` scanned in one program, each on a fresh batch of prototype episodes);
    returns (meta_params, the batch loss before each step's update).

    ``fast_compile=False`` compiles with optimisations (worth it for many steps).
    """
    from vsml_jax.meta.grad import GradState, make_grad_train_block, make_optimizer

    opt = make_optimizer(lr)
    sample = lambda k: _prototype_episodes(k, batch, length, input_dim, num_classes)  # noqa: E731
    block = make_grad_train_block(learner, opt, sample, num_classes, steps, remat=remat)
    run = fast_jit(block) if fast_compile else jax.jit(block)
    state = GradState(params=meta_params, opt_state=opt.init(meta_params))
    state, metrics = run(state, jax.random.key(seed), 0)
    losses = np.asarray(metrics["meta_loss"])
    assert np.all(np.isfinite(losses)), losses
    return state.params, losses


def before_after(losses, first=3, last=10):
    """Held-out loss at the start (mean of the first steps) and end (mean of the last)."""
    return float(np.mean(losses[:first])), float(np.mean(losses[-last:]))


def initial_meta_params(learner, num_classes=C, input_dim=D, seed=0):
    task = TaskSpec(input_dim, num_classes)
    return fast_jit(learner.meta_init, static_argnums=1)(jax.random.key(seed), task)
