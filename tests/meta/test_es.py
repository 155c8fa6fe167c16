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
