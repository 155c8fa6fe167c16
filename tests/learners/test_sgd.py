import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.learners.utils import C, batch_results, check_protocol, fast_jit, prototype_episodes
from vsml_jax.evaluation.tuning import tune_lr
from vsml_jax.learners.base import Learner
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
    search = tune_lr(lambda lr: sgd(lr=lr, hidden=(16,)), lrs, xs, labels, jax.random.key(6), C)
    assert search.lr == 0.3 and search.interior, search
    assert search.lrs == tuple(lrs)  # interior on the grid: nothing added
    assert search.losses.shape == (3,)
    assert search.losses[1] < search.losses[0]


def _peaked(best_lr):
    """A learner whose mean online loss is known: it always predicts class 0 with logit
    ``5 - (log10 lr - log10 best_lr)^2``, so on all-zero labels ``best_lr`` is optimal."""

    def make(lr):
        score = 5.0 - (jnp.log10(lr) - np.log10(best_lr)) ** 2

        def step(meta_params, state, x, feedback):
            return state, jnp.zeros(C).at[0].set(score)

        return Learner("peaked", lambda key, task: {}, lambda mp, task, key: (), step)

    return make


@pytest.mark.parametrize("best", [0.01, 1000.0])
def test_tune_lr_moves_past_the_grids_edge(best):
    xs, labels = jnp.zeros((2, 5, 4)), jnp.zeros((2, 5), jnp.int32)
    grid = [1.0, 10**0.5, 10.0]  # the optimum lies 4 grid steps below or 5 above
    search = tune_lr(_peaked(best), grid, xs, labels, jax.random.key(0), C, max_extensions=6)
    assert search.interior, search
    assert search.lr == pytest.approx(best, rel=1e-6)
    assert search.lrs == tuple(sorted(search.lrs)) and set(grid) <= set(search.lrs)
    assert search.lrs[0] < best < search.lrs[-1]
    # with too few extensions the edge is still the best, and that is said
    short = tune_lr(_peaked(best), grid, xs, labels, jax.random.key(0), C, max_extensions=2)
    assert not short.interior and len(short.lrs) == 5
    assert short.lr in (short.lrs[0], short.lrs[-1])
    assert "the best may lie beyond it" in short.edge_note("adam")
    # the grid alone, as before
    alone = tune_lr(_peaked(best), grid, xs, labels, jax.random.key(0), C, max_extensions=0)
    assert alone.lrs == tuple(grid) and not alone.interior
