"""Shared helpers for the learner tests: a tiny synthetic task family and protocol checks."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from vsml_jax.config import ESConfig
from vsml_jax.data import DatasetArrays, EpisodeSpec, to_device
from vsml_jax.episode import run_episode
from vsml_jax.learners.base import Learner, TaskSpec
from vsml_jax.meta import es

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


def prototype_data(num_classes=C, dim=D, per_class=64, noise=0.3, seed=0):
    """A ``DeviceDataset`` of noisy copies of ``num_classes`` prototypes.

    The prototypes are orthogonal with norm ``sqrt(dim)``, so under the fresh ``N(0, 1/dim)``
    projection of :func:`prototype_spec` they become independent ``N(0, 1)`` prototypes
    for every episode (and the labels are permuted): the task family of
    ``_prototype_episodes``, drawn by the production episode sampler.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    protos = np.sqrt(dim) * q[:num_classes]
    labels = np.repeat(np.arange(num_classes, dtype=np.int32), per_class)
    images = protos[labels] + noise * rng.standard_normal((len(labels), dim))
    arrays = DatasetArrays(
        "prototypes",
        "test",
        "train",
        images.astype(np.float32)[:, None, :, None],
        labels,
        num_classes,
        0.0,
        1.0,
    )
    return to_device([arrays])


def prototype_spec(length=T, input_dim=D, num_classes=C):
    """Every episode: a fresh ``N(0, 1/D)`` projection and a fresh class relabelling."""
    return EpisodeSpec(
        length=length,
        input_dim=input_dim,
        num_classes=num_classes,
        projection_prob=1.0,
        permute_labels=True,
    )


def es_meta_train(
    learner,
    meta_params,
    steps,
    key,
    pop=64,
    lr=0.03,
    std=0.05,
    num_classes=C,
    input_dim=D,
    length=T,
):
    """The production OpenAI-ES (``meta/es.py``: strategy, population evaluation,
    generation, scanned block) on prototype episodes; returns ``(mean, meta-loss per
    generation)``. Each generation's loss is the population's mean online loss on fresh
    episodes, measured before the update that uses them: a held-out curve."""
    cfg = ESConfig(population_pairs=pop // 2, lr=lr, sigma=std)
    strategy = es.make_strategy(cfg, meta_params)
    data = prototype_data(num_classes, input_dim)
    evaluate = es.make_evaluate(
        learner, data, prototype_spec(length, input_dim, num_classes), num_classes
    )
    block = fast_jit(es.make_train_block(es.make_generation(strategy, evaluate), steps))
    k_init, k_run = jax.random.split(key)
    state, metrics = block(es.init_strategy(strategy, k_init, meta_params), k_run, 0)
    assert int(np.sum(metrics["skipped"])) == 0, metrics["nonfinite"]
    return strategy.get_mean(state), np.asarray(metrics["meta_loss"])


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
    sample = lambda k, step: _prototype_episodes(k, batch, length, input_dim, num_classes)  # noqa: E731
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
