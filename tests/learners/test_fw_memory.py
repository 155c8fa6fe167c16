import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.learners.utils import before_after, check_protocol, grad_meta_train, initial_meta_params
from vsml_jax.learners.fw_memory import fw_memory, fwm_read, fwm_write


def test_protocol():
    meta_params = check_protocol(fw_memory(hidden=16, memory_size=4, n_reads=2))
    assert {"lstm", "write", "read", "read_proj", "head"} <= set(meta_params)


def test_bad_reads():
    with pytest.raises(ValueError, match="n_reads"):
        fw_memory(n_reads=0)


def test_write_then_read_retrieves_value():
    m = 4
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    e1, e2 = jnp.tanh(jax.random.normal(k1, (m,))), jnp.tanh(jax.random.normal(k2, (m,)))
    value = jax.random.normal(k3, (m,))
    value = 0.3 * value / jnp.linalg.norm(value)  # small enough not to trigger the norm clip
    memory = fwm_write(jnp.zeros((m, m, m)), e1, e2, value, 1.0)
    # Reading with the same key pair returns the (layer-normalised) stored value.
    read = fwm_read(memory, e1, e2[None])
    centred = value - value.mean()
    np.testing.assert_allclose(read, centred / jnp.sqrt(jnp.mean(centred**2)), atol=1e-3)
    assert jnp.linalg.norm(memory) <= 1.0 + 1e-6


def test_meta_training_learns_to_learn():
    num_classes = 2  # the black box escapes its initial plateau faster with two classes
    learner = fw_memory(hidden=64, memory_size=8, n_reads=1)
    meta_params = initial_meta_params(learner, num_classes)
    # Many steps: an optimised compile pays off. Over 5 seeds x 2 compile modes the final
    # loss was 0.25-0.47 (chance: log 2 = 0.69).
    _, losses = grad_meta_train(
        learner, meta_params, steps=150, lr=0.01, num_classes=num_classes, fast_compile=False
    )
    before, after = before_after(losses)
    # Below chance (log C) is only possible by learning within the episode.
    assert after < 0.85 * np.log(num_classes), (before, after)
    assert after < before - 0.1, (before, after)
