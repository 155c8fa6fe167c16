import jax
import numpy as np
import optax
import pytest

from tests.learners.utils import C, fast_jit, initial_meta_params, prototype_episodes
from vsml_jax.episode import batch_episode_loss, episode_loss
from vsml_jax.learners.hebbian import hebbian
from vsml_jax.learners.learned_optimizer import learned_optimizer
from vsml_jax.learners.maml import maml
from vsml_jax.meta.grad import make_grad_meta_step, with_remat


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


def test_meta_step_decreases_loss():
    learner = maml(hidden=(8,), lr=0.01, first_order=True)
    meta_params = initial_meta_params(learner)
    opt = optax.adam(0.03)
    opt_state = opt.init(meta_params)
    step = make_grad_meta_step(learner, opt, C, remat=True)
    xs, labels = prototype_episodes(jax.random.key(0), 16, length=30)
    losses = []
    for i in range(15):
        meta_params, opt_state, loss = step(meta_params, opt_state, xs, labels, jax.random.key(i))
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses
