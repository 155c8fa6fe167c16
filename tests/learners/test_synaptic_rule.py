import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.learners.utils import (
    C,
    before_after,
    check_protocol,
    es_meta_train,
    fast_jit,
    initial_meta_params,
)
from vsml_jax.learners.base import Feedback, TaskSpec
from vsml_jax.learners.synaptic_rule import FEATURES, NUM_FEATURES, synaptic_rule


@pytest.mark.parametrize(
    "hidden,modulation,per_layer",
    [((), "backprop", False), ((8,), "feedback_alignment", True)],
)
def test_protocol(hidden, modulation, per_layer):
    meta_params = check_protocol(synaptic_rule(hidden, modulation, per_layer))
    expected = (len(hidden) + 1, NUM_FEATURES) if per_layer else (NUM_FEATURES,)
    assert meta_params["theta"].shape == expected


def test_bad_options():
    with pytest.raises(ValueError, match="hidden"):
        synaptic_rule(hidden=(4, 4))
    with pytest.raises(ValueError, match="modulation"):
        synaptic_rule(modulation="random")


def test_pre_times_mod_rule_is_sgd():
    """theta = lr on pre*mod (backprop modulation) is exactly one SGD step on the CE."""
    lr = 0.3
    learner = synaptic_rule(hidden=(5,), modulation="backprop")
    task = TaskSpec(input_dim=4, num_classes=3)
    theta = jnp.zeros(NUM_FEATURES).at[FEATURES.index("pre*mod")].set(lr)
    meta_params = {"theta": theta}
    state0 = learner.init(meta_params, task, jax.random.key(0))
    x0, x1 = jax.random.normal(jax.random.key(1), (2, 4))
    step = fast_jit(learner.step)
    state1, logits0 = step(meta_params, state0, x0, Feedback.zeros(3))
    for w0, w1 in zip(state0.weights, state1.weights, strict=True):
        np.testing.assert_array_equal(w0, w1)  # no update without feedback
    onehot = jax.nn.one_hot(2, 3)
    fb = Feedback(error=jax.nn.softmax(logits0) - onehot, label=onehot)
    state2, _ = step(meta_params, state1, x1, fb)

    def loss(weights):
        h = jnp.tanh(weights[0] @ jnp.append(x0, 1.0))
        return optax.softmax_cross_entropy(weights[1] @ jnp.append(h, 1.0), onehot)

    grads = fast_jit(jax.grad(loss))(state1.weights)
    for w, g, new in zip(state1.weights, grads, state2.weights, strict=True):
        np.testing.assert_allclose(new, w - lr * g, rtol=1e-4, atol=1e-6)


def test_es_meta_training_improves():
    learner = synaptic_rule()
    meta_params = initial_meta_params(learner)
    _, losses = es_meta_train(learner, meta_params, steps=50, key=jax.random.key(7))
    before, after = before_after(losses, last=5)
    assert after < 0.5 * before, (before, after)
    assert after < 0.5 * np.log(C), (before, after)
