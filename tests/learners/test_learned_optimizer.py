import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.learners.utils import (
    before_after,
    check_protocol,
    grad_meta_train,
    initial_meta_params,
)
from vsml_jax.learners.learned_optimizer import learned_optimizer, preprocess_gradients


@pytest.mark.parametrize("hidden,num_layers", [((), 2), ((4,), 1)])
def test_protocol(hidden, num_layers):
    check_protocol(learned_optimizer(hidden=hidden, lstm_hidden=4, num_layers=num_layers))


def test_preprocessing():
    p = 10.0
    g = jnp.array([1.0, -0.5, 1e-6, -1e-6, 0.0])
    out = preprocess_gradients(g, p)
    assert out.shape == (5, 2)
    np.testing.assert_allclose(out[:2, 0], jnp.log(jnp.abs(g[:2])) / p, rtol=1e-6)
    np.testing.assert_allclose(out[:2, 1], [1.0, -1.0])
    np.testing.assert_allclose(out[2:, 0], -1.0)
    np.testing.assert_allclose(out[2:, 1], jnp.exp(p) * g[2:], rtol=1e-5)
    # Finite derivatives everywhere, also at g = 0.
    grads = jax.grad(lambda g: preprocess_gradients(g, p).sum())(g)
    assert np.all(np.isfinite(grads))


def test_meta_training_improves():
    learner = learned_optimizer(lstm_hidden=8)
    meta_params = initial_meta_params(learner)
    _, losses = grad_meta_train(learner, meta_params, steps=30, lr=0.01, batch=8)
    before, after = before_after(losses)
    assert after < 0.7 * before, (before, after)

