"""Evolution strategies over a learner's meta-parameters, sharded over devices.

A thin layer around evosax: it adds the population evaluation (one online
episode per member, antithetic pairs sharing their episode and initial state),
the sharding of the population axis over the global mesh, a guard against
non-finite fitness, and a scan over blocks of generations. One call of the
function returned by :func:`make_train_block` is one jitted program.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from evosax.core import fitness_shaping

from vsml_jax.data.episodes import DeviceDataset, EpisodeSpec, sample_episode
from vsml_jax.episode import episode_loss
from vsml_jax.learners.base import Learner, PyTree
from vsml_jax.meta.sharding import pop_sharding

FITNESS_SHAPING = {
    "identity": fitness_shaping.identity_fitness_shaping_fn,
    "centered_rank": fitness_shaping.centered_rank_fitness_shaping_fn,
    "standardize": fitness_shaping.standardize_fitness_shaping_fn,
    "normalize": fitness_shaping.normalize_fitness_shaping_fn,
}


def make_strategy(cfg, solution: PyTree):
    """The evosax strategy named by ``cfg.strategy`` (minimising fitness); ``cfg`` is an
    :class:`~vsml_jax.config.ESConfig`."""
    # imported here: importing evosax's algorithms initialises the XLA backend, which
    # must wait until jax.distributed.initialize() has run in multi-process runs
    from evosax.algorithms import distribution_based_algorithms

    if cfg.fitness_shaping not in FITNESS_SHAPING:
        raise ValueError(
            f"unknown es.fitness_shaping {cfg.fitness_shaping!r}; "
            f"choose one of {', '.join(FITNESS_SHAPING)}"
        )
    if cfg.strategy not in distribution_based_algorithms:
        raise ValueError(
            f"unknown es.strategy {cfg.strategy!r}; choose one of "
            f"{', '.join(sorted(distribution_based_algorithms))}"
        )
    shaping = FITNESS_SHAPING[cfg.fitness_shaping]
    cls = distribution_based_algorithms[cfg.strategy]
    if cfg.strategy == "Open_ES":
        return cls(
            population_size=cfg.population_size,
            solution=solution,
            use_antithetic_sampling=True,
            optimizer=optax.adam(cfg.lr),
            std_schedule=optax.constant_schedule(cfg.sigma),
            fitness_shaping_fn=shaping,
        )
    return cls(population_size=cfg.population_size, solution=solution, fitness_shaping_fn=shaping)


def init_strategy(strategy, key: jax.Array, meta_params: PyTree):
    """Initial strategy state centred on ``meta_params``."""
    params = strategy.default_params
    return strategy.init(key, meta_params, params)


def make_evaluate(
    learner: Learner,
    data: DeviceDataset,
    spec: EpisodeSpec,
    num_classes: int,
    mesh=None,
) -> Callable[[PyTree, jax.Array], jax.Array]:
    """``evaluate(population, key) -> fitness [P]``: mean online loss of one episode each.

    Members ``i`` and ``i + P/2`` form an antithetic pair (evosax's layout) and
    see the same episode and the same initial learner state. Each member samples
    its own episode, so with a mesh every device only builds the episodes of its
    own members.
    """

    def member(params, pair, key):
        k_episode, k_init = jax.random.split(jax.random.fold_in(key, pair))
        xs, labels = sample_episode(k_episode, data, spec)
        weights = getattr(spec, "loss_weights", None)  # e.g. a few-shot episode's queries
        return episode_loss(learner, params, xs, labels, k_init, num_classes, weights)

    def evaluate(population, key):
        size = jax.tree.leaves(population)[0].shape[0]
        pairs = jnp.arange(size) % (size // 2)
        if mesh is not None:
            population, pairs = jax.lax.with_sharding_constraint(
                (population, pairs), pop_sharding(mesh)
            )
        return jax.vmap(member, in_axes=(0, 0, None))(population, pairs, key)

    return evaluate


def all_finite(tree) -> jax.Array:
    """True iff every element of every leaf of ``tree`` is finite (integers always are)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def make_generation(strategy, evaluate):
    """``generation(state, key) -> (state, metrics)``: ask, evaluate, tell.

    If any fitness is non-finite, or any leaf of the updated state is (e.g. a NaN
    learning rate), the update is skipped and the state is kept: ``metrics['skipped']``
    is 1 and ``metrics['nonfinite']`` counts the members with non-finite fitness, for the
    caller to report.
    """
    params = strategy.default_params

    def generation(state, key):
        k_ask, k_eval, k_tell = jax.random.split(key, 3)
        population, asked = strategy.ask(k_ask, state, params)
        fitness = evaluate(population, k_eval)
        finite = jnp.isfinite(fitness)
        told, _ = strategy.tell(k_tell, population, jnp.where(finite, fitness, 0.0), asked, params)
        ok = finite.all() & all_finite(told)
        state = jax.tree.map(lambda new, old: jnp.where(ok, new, old), told, state)
        safe = jnp.where(finite, fitness, jnp.nan)
        metrics = {
            "meta_loss": jnp.nanmean(safe),
            "meta_loss_std": jnp.nanstd(safe),
            "meta_loss_min": jnp.nanmin(safe),
            "meta_loss_max": jnp.nanmax(safe),
            "sigma": jnp.mean(getattr(state, "std", jnp.nan)),
            "nonfinite": jnp.sum(~finite),
            "skipped": (~ok).astype(jnp.int32),
        }
        return state, metrics

    return generation


def es_trainer(cfg, learner: Learner, like: PyTree, data, spec, num_classes: int, mesh=None):
    """ES as a :class:`~vsml_jax.meta.trainer.Trainer` (``cfg`` an ``ESConfig``): blocks of
    ``cfg.generations_per_call`` generations; the state is the evosax state."""
    from vsml_jax.meta.trainer import Trainer

    strategy = make_strategy(cfg, like)
    evaluate = make_evaluate(learner, data, spec, num_classes, mesh)
    block = make_train_block(make_generation(strategy, evaluate), cfg.generations_per_call)
    return Trainer(
        init=lambda meta_params, key: init_strategy(strategy, key, meta_params),
        block=block,
        mean=strategy.get_mean,
        steps_per_block=cfg.generations_per_call,
    )


def make_train_block(generation, num_generations: int):
    """``block(state, base_key, start) -> (state, metrics)`` scanning ``num_generations``.

    Generation ``g`` uses ``fold_in(base_key, g)``, so a resumed run draws the same
    noise and episodes as an uninterrupted one.
    """

    def block(state, base_key, start):
        def body(state, g):
            return generation(state, jax.random.fold_in(base_key, g))

        gens = start + jnp.arange(num_generations)
        return jax.lax.scan(body, state, gens)

    return block
