import jax
import numpy as np

from tests.learners.utils import batch_results, check_protocol, prototype_episodes
from vsml_jax.learners.base import Feedback, TaskSpec
from vsml_jax.learners.ncm import ncm


def test_protocol():
    assert check_protocol(ncm()) == {}


def test_learns_within_episode():
    xs, labels = prototype_episodes(jax.random.key(3), 32, length=60)
    acc = np.asarray(batch_results(ncm(), {}, xs, labels, jax.random.key(4)).accuracy)
    assert acc[:, 30:].mean() > 0.9 > acc[:, :3].mean()


def test_predicts_the_nearest_seen_class_mean():
    learner = ncm()
    state = learner.init({}, TaskSpec(2, 3), jax.random.key(0))
    x0, x1, x2 = np.array([0.0, 0.0]), np.array([4.0, 0.0]), np.array([3.0, 0.5])
    one_hot = lambda c: np.eye(3, dtype=np.float32)[c]  # noqa: E731
    state, _ = learner.step({}, state, x0, Feedback.zeros(3))
    state, _ = learner.step({}, state, x1, Feedback(one_hot(2) * 0, one_hot(2)))  # x0 -> 2
    state, logits = learner.step({}, state, x2, Feedback(one_hot(0) * 0, one_hot(0)))  # x1 -> 0
    assert int(np.argmax(logits)) == 0  # x2 is nearer x1 (class 0) than x0 (class 2)
    assert logits[1] < logits[2] < logits[0]  # class 1 is unseen
