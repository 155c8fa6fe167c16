import jax
import numpy as np
import pytest

from tests.learners.utils import (
    before_after,
    check_protocol,
    fast_jit,
    grad_meta_train,
    initial_meta_params,
    prototype_episodes,
)
from vsml_jax.episode import run_episode
from vsml_jax.learners.base import TaskSpec
from vsml_jax.learners.maml import maml
from vsml_jax.learners.sgd import sgd


def test_protocol():
    meta_params = check_protocol(maml(hidden=(8,), first_order=True))
    assert set(meta_params) == {"params", "log_lr"}
    assert "log_lr" not in initial_meta_params(maml(hidden=(8,), learn_lr=False))


def test_bad_lr():
    with pytest.raises(ValueError, match="lr"):
        maml(lr=0.0)


def test_matches_sgd_from_the_same_weights():
    """With meta-params = SGD's drawn weights, MAML's episode is SGD's episode."""
    xs, labels = prototype_episodes(jax.random.key(0), 1, length=15)
    learner = maml(hidden=(8,), lr=0.2, learn_lr=False)
    key = jax.random.key(3)
    task = TaskSpec(input_dim=8, num_classes=3)
    meta_params = {"params": sgd(lr=0.2, hidden=(8,)).init({}, task, key).params}
    run = fast_jit(run_episode, static_argnums=(0, 5))
    ours = run(learner, meta_params, xs[0], labels[0], key, 3)
    ref = run(sgd(lr=0.2, hidden=(8,)), {}, xs[0], labels[0], key, 3)
    np.testing.assert_allclose(ours.logits, ref.logits, rtol=1e-5, atol=1e-6)


def test_meta_training_improves():
    learner = maml(hidden=(16,), lr=0.01)  # full second-order meta-gradient
    meta_params = initial_meta_params(learner)
    meta_params, losses = grad_meta_train(learner, meta_params, steps=30, lr=0.03, batch=8)
    before, after = before_after(losses)
    assert after < 0.75 * before, (before, after)
    assert meta_params["log_lr"] > np.log(0.01)  # it learned to learn faster
