import jax
import numpy as np
import pytest

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


def _logits(learner, xs, labels):
    """Logits ``[T, 3]`` of one online episode of ``xs [T, D]`` with ``labels [T]``."""
    res = batch_results(learner, {}, xs[None], np.asarray(labels)[None], jax.random.key(0))
    return np.asarray(res.logits[0])


def test_tanh_features_are_ncm_on_squashed_inputs():
    xs = 2.0 * np.asarray(jax.random.normal(jax.random.key(1), (12, 5)))
    labels = np.arange(12) % 3
    np.testing.assert_allclose(
        _logits(ncm(features="tanh"), xs, labels), _logits(ncm(), np.tanh(xs), labels), rtol=1e-6
    )
    with pytest.raises(ValueError, match="ncm features must be one of"):
        ncm(features="relu")


def test_without_the_norm_term_the_largest_inner_product_wins():
    # class means [1, 0] (class 0) and [3, 0] (class 1); x = [1, 0] is nearest class 0
    # but has the larger inner product with class 1's mean
    xs = np.array([[1.0, 0.0], [3.0, 0.0], [1.0, 0.0]], np.float32)
    labels = [0, 1, 2]
    with_norm = _logits(ncm(), xs, labels)[-1]
    without = _logits(ncm(norm_term=False), xs, labels)[-1]
    assert int(np.argmax(with_norm)) == 0 and int(np.argmax(without)) == 1
    np.testing.assert_allclose(without[:2], [2.0 * 1 / 2, 2.0 * 3 / 2])  # 2 x.mu / D
    assert ncm(features="tanh", norm_term=False).name == "ncm_tanh_nonorm"
