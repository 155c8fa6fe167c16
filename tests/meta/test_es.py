"""ES wrapper: estimator and sign on a quadratic, config errors, non-finite guard."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from evosax.algorithms import Open_ES

from vsml_jax.config import ESConfig
from vsml_jax.meta import es

TARGET = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array(3.0)}


def quadratic(population, key):
    del key
    return sum(
        jnp.sum((p - t) ** 2, axis=tuple(range(1, p.ndim)))
        for p, t in zip(jax.tree.leaves(population), jax.tree.leaves(TARGET))
    )


def test_es_gradient_matches_true_gradient_and_sign():
    """With SGD(lr=1) the mean moves by minus the ES gradient estimate; averaged
    over many generations' noise it equals minus the true gradient."""
    x0 = {"w": jnp.zeros(3), "b": jnp.array(0.0)}
    strategy = Open_ES(
        population_size=2000,
        solution=x0,
        optimizer=optax.sgd(1.0),
        std_schedule=optax.constant_schedule(0.05),
        fitness_shaping_fn=es.FITNESS_SHAPING["identity"],
    )
    state = es.init_strategy(strategy, jax.random.PRNGKey(0), x0)
    gen = jax.jit(es.make_generation(strategy, quadratic))
    steps = jnp.stack(
        [
            jax.flatten_util.ravel_pytree(strategy.get_mean(gen(state, jax.random.PRNGKey(i))[0]))[
                0
            ]
            for i in range(10)
        ]
    )
    estimate = -steps.mean(0)  # mean moved from 0 by -grad
    true = np.array([-2.0, 4.0, -1.0, -6.0])  # d/dx |x - t|^2 at 0, leaves order (b, w)
    flat_true = jax.flatten_util.ravel_pytree({"w": true[:3], "b": true[3]})[0]
    np.testing.assert_allclose(estimate, flat_true, rtol=0.15, atol=0.3)


def test_make_strategy_minimises_a_quadratic_with_paper_defaults():
    x0 = {"w": jnp.zeros(3), "b": jnp.array(0.0)}
    cfg = ESConfig(population_pairs=32, sigma=0.05, lr=0.05)
    strategy = es.make_strategy(cfg, x0)
    state = es.init_strategy(strategy, jax.random.PRNGKey(0), x0)
    block = jax.jit(es.make_train_block(es.make_generation(strategy, quadratic), 200))
    state, metrics = block(state, jax.random.PRNGKey(1), 0)
    assert metrics["meta_loss"][-1] < 0.05 * metrics["meta_loss"][0]
    assert np.all(np.asarray(metrics["sigma"]) == pytest.approx(0.05))
    mean = strategy.get_mean(state)
    np.testing.assert_allclose(mean["w"], TARGET["w"], atol=0.1)


def test_nonfinite_fitness_skips_the_update():
    x0 = {"w": jnp.zeros(3), "b": jnp.array(0.0)}
    strategy = es.make_strategy(ESConfig(population_pairs=4), x0)
    state = es.init_strategy(strategy, jax.random.PRNGKey(0), x0)

    def broken(population, key):
        f = quadratic(population, key)
        return f.at[3].set(jnp.nan)

    new, metrics = jax.jit(es.make_generation(strategy, broken))(state, jax.random.PRNGKey(1))
    assert int(metrics["nonfinite"]) == 1
    np.testing.assert_array_equal(new.mean, state.mean)
    assert np.isfinite(float(metrics["meta_loss"]))


def test_unknown_strategy_and_shaping_are_clear_errors():
    x0 = {"w": jnp.zeros(3)}
    with pytest.raises(ValueError, match="unknown es.strategy 'Nope'.*Open_ES"):
        es.make_strategy(ESConfig(strategy="Nope"), x0)
    with pytest.raises(ValueError, match="fitness_shaping"):
        es.make_strategy(ESConfig(fitness_shaping="rank"), x0)
    other = es.make_strategy(ESConfig(strategy="SNES", population_pairs=4), x0)
    assert other.population_size == 8


def _vsml_setup(pairs=4, A=6, B=2, T=3):
    from vsml_jax.data.device import to_device
    from vsml_jax.data.episodes import EpisodeSpec
    from vsml_jax.data.sources import load_split
    from vsml_jax.learners.base import TaskSpec
    from vsml_jax.learners.vsml import vsml

    data = to_device([load_split("sum", "train", num_examples=256)])
    spec = EpisodeSpec(length=T, input_dim=A, num_classes=B, projection_prob=1.0)
    learner = vsml()
    meta = learner.meta_init(jax.random.PRNGKey(0), TaskSpec(A, B))
    strategy = es.make_strategy(ESConfig(population_pairs=pairs), meta)
    state = es.init_strategy(strategy, jax.random.PRNGKey(1), meta)
    population, _ = strategy.ask(jax.random.PRNGKey(2), state, strategy.default_params)
    return learner, data, spec, population


def test_evaluate_equals_one_episode_per_member_at_every_batch():
    """However many members are evaluated at once, and whether pairs share one sampled
    episode, member i gets the episode and initial state of pair i mod P/2."""
    from vsml_jax.data.episodes import sample_episode
    from vsml_jax.episode import episode_loss

    learner, data, spec, population = _vsml_setup()
    key = jax.random.PRNGKey(3)

    def member(params, pair):  # the definition: every member samples its pair's episode
        k_episode, k_init = jax.random.split(jax.random.fold_in(key, pair))
        xs, labels = sample_episode(k_episode, data, spec)
        return episode_loss(learner, params, xs, labels, k_init, 2)

    want = jax.jit(jax.vmap(member))(population, jnp.arange(8) % 4)
    assert len(set(np.round(np.asarray(want), 6))) == 8  # the members differ
    for batch in (1, 8):  # one member at a time (the CPU default), all at once
        evaluate = es.make_evaluate(learner, data, spec, 2, batch=batch)
        # the dataset passed as an argument of the compiled program, or baked into it
        got = (
            jax.jit(evaluate)(population, key, data)
            if batch == 1
            else jax.jit(evaluate)(population, key)
        )
        np.testing.assert_allclose(got, want, rtol=2e-6, err_msg=f"batch={batch}")
    with pytest.raises(ValueError, match="es.eval_batch must be >= 0"):
        es.make_evaluate(learner, data, spec, 2, batch=-1)
