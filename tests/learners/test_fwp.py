import jax.numpy as jnp
import numpy as np
import pytest

from tests.learners.utils import (
    C,
    before_after,
    check_protocol,
    grad_meta_train,
    initial_meta_params,
)
from vsml_jax.learners.fwp import delta_rule_write, fwp, normalize_key


def test_protocol():  # the default (l2, linear slow net) is exercised by the training test
    check_protocol(fwp(key_size=8, value_size=8, key_norm="softmax", slow_hidden=(8,)))


def test_bad_norm():
    with pytest.raises(ValueError, match="key_norm"):
        fwp(key_norm="none")


def test_delta_rule_stores_and_replaces():
    fast = jnp.zeros((2, 3))
    k = normalize_key(jnp.array([1.0, 2.0, 0.0]), "l2")
    fast = delta_rule_write(fast, k, jnp.array([1.0, -1.0]), 1.0)
    np.testing.assert_allclose(fast @ k, [1.0, -1.0], atol=1e-5)
    # beta = 1 replaces the value stored under the same key.
    fast = delta_rule_write(fast, k, jnp.array([3.0, 0.5]), 1.0)
    np.testing.assert_allclose(fast @ k, [3.0, 0.5], atol=1e-5)
    np.testing.assert_allclose(normalize_key(jnp.array([1.0, 3.0]), "softmax").sum(), 1.0)


def test_meta_training_learns_to_learn():
    learner = fwp(key_size=16, value_size=16)
    meta_params = initial_meta_params(learner)
    _, losses = grad_meta_train(learner, meta_params, steps=100, lr=0.01)
    before, after = before_after(losses)
    assert after < 0.6 * np.log(C), (before, after)
    assert after < before - 0.4, (before, after)
