import jax
import jax.numpy as jnp
import numpy as np

from tests.learners.utils import (
    C,
    before_after,
    check_protocol,
    fast_jit,
    grad_meta_train,
    initial_meta_params,
)
from vsml_jax.learners.learned_optimizer import learned_optimizer, preprocess_gradients


def test_protocol():
    check_protocol(learned_optimizer(hidden=(4,), lstm_hidden=4, num_layers=2))


def test_preprocessing():
    p = 10.0
    g = jnp.array([1.0, -0.5, 1e-6, -1e-6, 0.0])
    out = fast_jit(preprocess_gradients, static_argnums=1)(g, p)
    assert out.shape == (5, 2)
    np.testing.assert_allclose(out[:2, 0], jnp.log(jnp.abs(g[:2])) / p, rtol=1e-6)
    np.testing.assert_allclose(out[:2, 1], [1.0, -1.0])
    np.testing.assert_allclose(out[2:, 0], -1.0)
    np.testing.assert_allclose(out[2:, 1], jnp.exp(p) * g[2:], rtol=1e-5)
    # Finite derivatives everywhere, also at g = 0.
    grads = fast_jit(jax.grad(lambda g: preprocess_gradients(g, p).sum()))(g)
    assert np.all(np.isfinite(grads))


def test_meta_training_improves():
    learner = learned_optimizer(lstm_hidden=8, num_layers=1)
    meta_params = initial_meta_params(learner)
    _, losses = grad_meta_train(learner, meta_params, steps=50, lr=0.01, batch=8)
    before, after = before_after(losses)
    assert after < 0.7 * before, (before, after)
    assert after < 0.5 * np.log(C), (before, after)
