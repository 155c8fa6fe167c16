import jax
import numpy as np
import pytest

from tests.learners.utils import (
    C,
    before_after,
    check_protocol,
    es_meta_train,
    initial_meta_params,
)
from vsml_jax.learners.base import Feedback, TaskSpec
from vsml_jax.learners.hebbian import hebbian


@pytest.mark.parametrize("rule,post", [("hebb", "error"), ("oja", "label")])
def test_protocol(rule, post):
    meta_params = check_protocol(hebbian(rule=rule, post=post))
    assert set(meta_params) == {"W", "b", "coeff", "rate", "decay_logit"}


def test_bad_options():
    with pytest.raises(ValueError, match="rule"):
        hebbian(rule="stdp")
    with pytest.raises(ValueError, match="post"):
        hebbian(post="softmax")


def test_hebbian_update():
    """F <- (1 - decay) F + rate * post outer pre, with pre = x_{t-1}, post = -error."""
    learner = hebbian(init_rate=0.5, init_decay=0.25)
    task = TaskSpec(input_dim=3, num_classes=2)
    meta_params = learner.meta_init(jax.random.key(0), task)
    state = learner.init(meta_params, task, jax.random.key(1))
    x0, x1 = np.array([1.0, 2.0, 3.0], np.float32), np.array([0.5, 0.0, -1.0], np.float32)
    state, _ = learner.step(meta_params, state, x0, Feedback.zeros(2))
    np.testing.assert_array_equal(state.fast, 0.0)
    error = np.array([0.3, -0.3], np.float32)
    fb = Feedback(error=error, label=np.array([0.0, 1.0], np.float32))
    state, logits = learner.step(meta_params, state, x1, fb)
    expected_fast = 0.5 * np.outer(-error, x0)
    np.testing.assert_allclose(state.fast, expected_fast, rtol=1e-5)
    weights = meta_params["W"] + meta_params["coeff"] * expected_fast
    np.testing.assert_allclose(logits, weights @ x1 + meta_params["b"], rtol=1e-5)


def test_es_meta_training_improves():
    learner = hebbian()
    meta_params = initial_meta_params(learner)
    _, losses = es_meta_train(learner, meta_params, steps=30, key=jax.random.key(7))
    before, after = before_after(losses, last=5)
    assert after < 0.7 * before, (before, after)
    assert after < 0.5 * np.log(C), (before, after)
