import jax
import numpy as np
import pytest

from tests.learners.utils import C, batch_results, check_protocol, fast_jit, prototype_episodes
from vsml_jax.evaluation.tuning import tune_lr
from vsml_jax.learners.sgd import adam, online_optimizer, sgd


@pytest.mark.parametrize("factory,hidden", [(sgd, ()), (adam, (16, 16))])
def test_protocol(factory, hidden):
    meta_params = check_protocol(factory(hidden=hidden))
    assert meta_params == {}


def test_bad_optimizer():
    with pytest.raises(ValueError, match="optimizer"):
        online_optimizer("rmsprop")


@pytest.mark.parametrize("learner", [sgd(lr=0.3, hidden=(32,)), adam(lr=0.03, hidden=(32,))])
def test_learns_within_episode(learner):
    xs, labels = prototype_episodes(jax.random.key(3), 32, length=60)
    res = batch_results(learner, {}, xs, labels, jax.random.key(4))
    acc = np.asarray(res.accuracy)
    first, second = acc[:, :10].mean(), acc[:, 30:].mean()
    assert second > 0.8, (first, second)
    assert second > first + 0.25, (first, second)
    assert np.asarray(res.loss)[:, 30:].mean() < 0.5 * np.log(C)


def test_no_update_without_feedback():
    """At t=0 the (zero) feedback must not change the weights or Adam's state."""
    from vsml_jax.learners.base import Feedback, TaskSpec

    learner = adam(hidden=(8,))
    task = TaskSpec(input_dim=4, num_classes=3)
    state = learner.init({}, task, jax.random.key(0))
    step = fast_jit(learner.step)
    new_state, _ = step({}, state, np.ones(4, np.float32), Feedback.zeros(3))
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(new_state.params), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        jax.tree.leaves(state.opt_state), jax.tree.leaves(new_state.opt_state), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_tune_lr_prefers_working_rate():
    xs, labels = prototype_episodes(jax.random.key(5), 16, length=40)
    lrs = [1e-4, 0.3, 1e4]
    best, losses = tune_lr(
        lambda lr: sgd(lr=lr, hidden=(16,)), lrs, xs, labels, jax.random.key(6), C
    )
    assert best == 0.3, losses
    assert losses.shape == (3,)
    assert losses[1] < losses[0]
