"""Relative meta-gradient steps (grad.relative_floor)."""

import jax.numpy as jnp
import numpy as np

from vsml_jax.meta.grad import make_optimizer


def test_relative_steps_scale_with_the_initial_magnitude():
    params = {"big": jnp.array([2000.0, -30.0]), "small": jnp.array([1e-3, 0.0])}
    grads = {"big": jnp.array([1.0, -1.0]), "small": jnp.array([1.0, 1.0])}
    opt = make_optimizer(1e-2, clip_norm=1.0, relative_floor=1e-6)
    updates, _ = opt.update(grads, opt.init(params), params)
    # Adam's first step is -lr * sign(g); relative: times |p0| + floor
    np.testing.assert_allclose(updates["big"], [-20.0, 0.3], rtol=1e-3)
    np.testing.assert_allclose(updates["small"], [-1e-5 - 1e-8, -1e-8], rtol=1e-3)
    plain, _ = make_optimizer(1e-2).update(grads, make_optimizer(1e-2).init(params), params)
    np.testing.assert_allclose(plain["small"], [-1e-2, -1e-2], rtol=1e-3)


def test_a_negative_relative_floor_is_a_config_error():
    import pytest

    from vsml_jax.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="grad.relative_floor"):
        load_config(overrides=["grad.relative_floor=-1"])
