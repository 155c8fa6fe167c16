import numpy as np

from tests.learners.utils import before_after, check_protocol, grad_meta_train, initial_meta_params
from vsml_jax.learners.meta_rnn import meta_rnn


def test_protocol():
    meta_params = check_protocol(meta_rnn(hidden=8))
    assert set(meta_params) == {"lstm", "head"}


def test_meta_training_learns_to_learn():
    num_classes = 2  # the black box escapes its initial plateau faster with two classes
    learner = meta_rnn(hidden=32)
    meta_params = initial_meta_params(learner, num_classes)
    _, losses = grad_meta_train(learner, meta_params, steps=150, lr=0.01, num_classes=num_classes)
    before, after = before_after(losses)
    # Below chance (log C) is only possible by learning within the episode.
    assert after < 0.7 * np.log(num_classes), (before, after)
    assert after < before - 0.2, (before, after)


def test_prev_input_reads_the_input_the_feedback_refers_to():
    import jax
    import jax.numpy as jnp

    from vsml_jax.learners.base import Feedback, TaskSpec

    learner = meta_rnn(hidden=8, prev_input=True)
    meta_params = check_protocol(learner)
    assert meta_params["lstm"]["ii"]["kernel"].shape[0] == 2 * 8 + 2 * 3  # D = 8, C = 3
    state = learner.init(meta_params, TaskSpec(8, 3), jax.random.key(0))
    x = jnp.arange(8.0)
    feedback = Feedback(error=jnp.zeros(3), label=jnp.zeros(3))
    (_, prev), _ = learner.step(meta_params, state, x, feedback)
    np.testing.assert_array_equal(prev, x)
