import jax
import numpy as np
import pytest

from tests.learners.utils import C, fast_jit, initial_meta_params, prototype_episodes
from vsml_jax.config import GradConfig
from vsml_jax.data import to_device
from vsml_jax.data.arrays import DatasetArrays
from vsml_jax.data.episodes import EpisodeSpec
from vsml_jax.episode import batch_episode_loss, episode_loss
from vsml_jax.learners.hebbian import hebbian
from vsml_jax.learners.learned_optimizer import learned_optimizer
from vsml_jax.learners.maml import maml
from vsml_jax.meta.grad import grad_trainer, with_remat


def test_batch_episode_loss_is_mean_episode_loss():
    learner = hebbian()
    meta_params = initial_meta_params(learner)
    xs, labels = prototype_episodes(jax.random.key(0), 3, length=10)
    key = jax.random.key(1)
    keys = jax.random.split(key, 3)
    single = fast_jit(episode_loss, static_argnums=(0, 5))
    expected = np.mean(
        [single(learner, meta_params, xs[i], labels[i], keys[i], C) for i in range(3)]
    )
    batched = fast_jit(batch_episode_loss, static_argnums=(0, 5))
    np.testing.assert_allclose(
        batched(learner, meta_params, xs, labels, key, C), expected, rtol=1e-5
    )


@pytest.mark.parametrize(
    "learner",
    [maml(hidden=(8,)), learned_optimizer(lstm_hidden=4, num_layers=1, stop_inner_grad=False)],
    ids=["maml", "learned_optimizer"],
)
def test_remat_gives_the_same_gradient(learner):
    """Both learners differentiate through their inner gradients (second order)."""
    meta_params = initial_meta_params(learner)
    xs, labels = prototype_episodes(jax.random.key(0), 2, length=12)
    key = jax.random.key(1)
    grad = fast_jit(jax.grad(batch_episode_loss, argnums=1), static_argnums=(0, 5))
    flat_plain, _ = jax.flatten_util.ravel_pytree(grad(learner, meta_params, xs, labels, key, C))
    flat_remat, _ = jax.flatten_util.ravel_pytree(
        grad(with_remat(learner), meta_params, xs, labels, key, C)
    )
    assert np.all(np.isfinite(flat_plain)) and np.any(flat_plain != 0)
    np.testing.assert_allclose(flat_remat, flat_plain, rtol=1e-4, atol=1e-6)


def _cluster_data(num=300, seed=0):
    """Three Gaussian clusters in 8-D; with a fresh projection and relabelling per episode
    no fixed predictor beats chance, so a lower loss means learning within episodes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, num).astype(np.int32)
    centres = rng.normal(size=(C, 8)).astype(np.float32)
    x = centres[labels] + 0.3 * rng.normal(size=(num, 8)).astype(np.float32)
    arrays = DatasetArrays("clusters", "test", "train", x[:, None, None, :], labels, C, 0.0, 1.0)
    return to_device([arrays])


def test_grad_trainer_decreases_the_meta_loss():
    """The production meta-gradient trainer (its jitted block, Adam through
    ``optax.apply_if_finite``) lowers the online loss of MAML within 20 steps."""
    learner = maml(hidden=(8,), lr=0.01, first_order=True)
    spec = EpisodeSpec(
        length=30, input_dim=8, num_classes=C, projection_prob=1.0, permute_labels=True
    )
    cfg = GradConfig(lr=0.03, batch_size=16, steps_per_call=20)
    trainer = grad_trainer(cfg, learner, _cluster_data(), spec, C)
    state = trainer.init(initial_meta_params(learner), jax.random.key(0))
    state, metrics = jax.jit(trainer.block)(state, jax.random.key(1), 0)
    losses = np.asarray(metrics["meta_loss"])
    assert np.all(np.isfinite(losses)) and not np.asarray(metrics["skipped"]).any()
    assert losses[-5:].mean() < 0.85 * losses[:5].mean(), losses
    assert jax.tree.structure(trainer.mean(state)) == jax.tree.structure(
        initial_meta_params(learner)
    )


def test_grad_trainer_skips_a_non_finite_gradient():
    learner = maml(hidden=(8,), lr=0.01, first_order=True)
    spec = EpisodeSpec(length=10, input_dim=8, num_classes=C, projection_prob=1.0)
    trainer = grad_trainer(
        GradConfig(batch_size=2, steps_per_call=2), learner, _cluster_data(), spec, C
    )
    params = initial_meta_params(learner)
    bad = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(np.nan), params)
    state, metrics = jax.jit(trainer.block)(
        trainer.init(bad, jax.random.key(0)), jax.random.key(1), 0
    )
    assert np.asarray(metrics["skipped"]).tolist() == [1, 1]
    for new, old in zip(jax.tree.leaves(trainer.mean(state)), jax.tree.leaves(bad), strict=True):
        np.testing.assert_array_equal(new, old)
