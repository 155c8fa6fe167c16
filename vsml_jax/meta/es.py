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
from jax.sharding import PartitionSpec

from vsml_jax.data.episodes import DeviceDataset, EpisodeSpec, sample_episode
from vsml_jax.episode import episode_loss
from vsml_jax.learners.base import Learner, PyTree
from vsml_jax.runtime.devices import POP, pop_sharding

FITNESS_SHAPING = {
    "identity": fitness_shaping.identity_fitness_shaping_fn,
    "centered_rank": fitness_shaping.centered_rank_fitness_shaping_fn,
    "standardize": fitness_shaping.standardize_fitness_shaping_fn,
    "normalize": fitness_shaping.normalize_fitness_shaping_fn,
}


def check_fitness_shaping(name: str) -> None:
    """ValueError unless ``name`` is a key of :data:`FITNESS_SHAPING`."""
    if name not in FITNESS_SHAPING:
        raise ValueError(
            f"unknown es.fitness_shaping {name!r}; choose one of {', '.join(FITNESS_SHAPING)}"
        )


def make_strategy(cfg, solution: PyTree):
    """The evosax strategy named by ``cfg.strategy`` (minimising fitness); ``cfg`` is an
    :class:`~vsml_jax.config.ESConfig`."""
    # imported here: importing evosax's algorithms initialises the XLA backend, which
    # must wait until jax.distributed.initialize() has run in multi-process runs
    from evosax.algorithms import distribution_based_algorithms

    check_fitness_shaping(cfg.fitness_shaping)
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


def eval_batch_for(platform: str, batch: int = 0) -> int | None:
    """Members one device evaluates at once: ``batch``, or for ``0`` the platform's choice.

    ``None`` means all of the device's members in one ``vmap`` (accelerators). On CPUs
    one member at a time is fastest: a member's LSTM state (``A * B * H`` floats per
    layer) and gate activations then stay in the core's caches, where a whole vmapped
    population streams from memory on every micro-tick (docs/BENCHMARKS.md).
    """
    if batch < 0:
        raise ValueError(f"es.eval_batch must be >= 0 (0 = the platform's choice), got {batch}")
    if batch:
        return batch
    return 1 if platform == "cpu" else None


def make_evaluate(
    learner: Learner,
    data: DeviceDataset,
    spec: EpisodeSpec,
    num_classes: int,
    mesh=None,
    batch: int = 0,
) -> Callable[..., jax.Array]:
    """``evaluate(population, key[, data]) -> fitness [P]``: mean online loss of one
    episode each.

    Members ``i`` and ``i + P/2`` form an antithetic pair (evosax's layout) and see the
    same episode and the same initial learner state. The pair samples its episode (and
    its projection) once and evaluates both members on it, so one device holds the
    episodes of only the pairs it is evaluating at that moment: memory does not grow
    with the population. With a mesh, pairs are split over the devices (single members
    when the pairs do not divide over them); on each device ``batch`` members are
    evaluated at once (see :func:`eval_batch_for`; 0 = the platform's choice), in a
    ``lax.map`` over the rest.

    ``data`` defaults to the dataset given here; pass it as an argument of the jitted
    caller (``make_generation``/``make_train_block`` forward extra arguments) so that
    it is an input of the compiled program and not a constant baked into it.
    """
    platform = (mesh.devices.flat[0] if mesh is not None else jax.devices()[0]).platform
    per_call = eval_batch_for(platform, batch)
    n = 1 if mesh is None else mesh.size

    def unit(params, pair, key, data):
        """Members ``params`` ``[k, ...]`` of one pair on the pair's episode: ``[k]``."""
        k_episode, k_init = jax.random.split(jax.random.fold_in(key, pair))
        xs, labels = sample_episode(k_episode, data, spec)
        weights = getattr(spec, "loss_weights", None)  # e.g. a few-shot episode's queries
        loss = lambda p: episode_loss(learner, p, xs, labels, k_init, num_classes, weights)  # noqa: E731
        if per_call is not None and per_call < 2:
            return jax.lax.map(loss, params)
        return jax.vmap(loss)(params)

    def evaluate(population, key, data=data):
        size = jax.tree.leaves(population)[0].shape[0]
        half = size // 2
        if half % n == 0:  # [half, 2, ...]: unit u holds members u and u + half
            units = jax.tree.map(
                lambda x: x.reshape(2, half, *x.shape[1:]).swapaxes(0, 1), population
            )
            ids = jnp.arange(half)
        else:  # single members, each sampling its pair's episode
            units = jax.tree.map(lambda x: x[:, None], population)
            ids = jnp.arange(size) % half
        count = ids.shape[0]
        groups = n if count % n == 0 else 1
        per_unit = jax.tree.leaves(units)[0].shape[1]
        units_at_once = None if per_call is None else max(1, per_call // per_unit)

        def on_device(params, pairs, key, data):  # one device's units, a few at a time
            run = lambda args: unit(*args, key, data)  # noqa: E731
            if units_at_once is None or units_at_once >= pairs.shape[0]:
                return jax.vmap(run)((params, pairs))
            # batch_size=1 would vmap every unit over an axis of size 1 (see below)
            at_once = None if units_at_once == 1 else units_at_once
            return jax.lax.map(run, (params, pairs), batch_size=at_once)

        if mesh is not None and groups > 1:
            # each device runs on_device on its own units (shard_map, not a vmap over a
            # device axis: a vmapped axis of size 1 per device costs the fast path ~1.8x)
            pop, rep = PartitionSpec(POP), PartitionSpec()
            fitness = jax.shard_map(
                on_device,
                mesh=mesh,
                in_specs=(pop, pop, rep, rep),
                out_specs=pop,
                check_vma=False,
            )(units, ids, key, data)
        else:
            fitness = on_device(units, ids, key, data)
        fitness = fitness.swapaxes(0, 1).reshape(size) if per_unit == 2 else fitness.reshape(size)
        if mesh is not None and groups > 1:  # the members' fitness stays where it was made
            fitness = jax.lax.with_sharding_constraint(fitness, pop_sharding(mesh))
        return fitness

    return evaluate


def all_finite(tree) -> jax.Array:
    """True iff every element of every leaf of ``tree`` is finite (integers always are)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def make_generation(strategy, evaluate):
    """``generation(state, key, *args) -> (state, metrics)``: ask, evaluate, tell;
    ``args`` (e.g. the dataset) are passed on to ``evaluate``.

    If any fitness is non-finite, or any leaf of the updated state is (e.g. a NaN
    learning rate), the update is skipped and the state is kept: ``metrics['skipped']``
    is 1 and ``metrics['nonfinite']`` counts the members with non-finite fitness, for the
    caller to report.
    """
    params = strategy.default_params

    def generation(state, key, *args):
        k_ask, k_eval, k_tell = jax.random.split(key, 3)
        population, asked = strategy.ask(k_ask, state, params)
        fitness = evaluate(population, k_eval, *args)
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


def es_trainer(
    cfg, learner: Learner, like: PyTree, data, spec, num_classes: int, mesh=None, evaluate=None
):
    """ES as a :class:`~vsml_jax.meta.base.Trainer` (``cfg`` an ``ESConfig``): blocks of
    ``cfg.generations_per_call`` generations; the state is the evosax state.

    ``evaluate(population, key) -> fitness`` replaces the default (``learner`` on
    episodes ``spec`` of ``data``, :func:`make_evaluate`), e.g. by a task mixture."""
    from vsml_jax.meta.base import Trainer

    strategy = make_strategy(cfg, like)
    args = ()
    if evaluate is None:
        evaluate = make_evaluate(learner, data, spec, num_classes, mesh, cfg.eval_batch)
        args = (data,)
    block = make_train_block(make_generation(strategy, evaluate), cfg.generations_per_call)
    return Trainer(
        init=lambda meta_params, key: init_strategy(strategy, key, meta_params),
        block=block,
        mean=strategy.get_mean,
        steps_per_block=cfg.generations_per_call,
        args=args,
    )


def make_train_block(generation, num_generations: int):
    """``block(state, base_key, start, *args) -> (state, metrics)`` scanning
    ``num_generations``; ``args`` are passed on to every ``generation``.

    Generation ``g`` uses ``fold_in(base_key, g)``, so a resumed run draws the same
    noise and episodes as an uninterrupted one.
    """

    def block(state, base_key, start, *args):
        def body(state, g):
            return generation(state, jax.random.fold_in(base_key, g), *args)

        gens = start + jnp.arange(num_generations)
        return jax.lax.scan(body, state, gens)

    return block
