import pytest

from vsml_jax.learners import LEARNERS, make_learner
from vsml_jax.learners.base import TaskSpec

EXPECTED = {
    "sgd",
    "adam",
    "meta_rnn",
    "hebbian",
    "fw_memory",
    "fwp",
    "learned_optimizer",
    "synaptic_rule",
    "maml",
    "ncm",
    "knn",
    "1nn",
}


def test_registry_has_all_learners():
    assert EXPECTED <= set(LEARNERS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_make_learner_defaults(name):
    import jax

    from vsml_jax.episode import run_episode

    learner = make_learner(name)
    assert learner.name == name
    # the three functions of the protocol run an episode: one logit row per step
    task = TaskSpec(input_dim=4, num_classes=3)
    key = jax.random.PRNGKey(0)
    meta_params = learner.meta_init(key, task)
    xs = jax.random.normal(key, (5, 4))
    labels = jax.numpy.array([0, 1, 2, 0, 1])
    out = run_episode(learner, meta_params, xs, labels, key, 3)
    assert out.logits.shape == (5, 3) and bool(jax.numpy.isfinite(out.logits).all())


def test_make_learner_kwargs():
    assert make_learner("adam", lr=0.01, hidden=()).name == "adam"


def test_unknown_learner():
    with pytest.raises(ValueError, match="Unknown learner 'nope'.*sgd"):
        make_learner("nope")


def test_unknown_kwarg():
    with pytest.raises(ValueError, match=r"\['lrr'\].*'sgd'.*lr"):
        make_learner("sgd", lrr=0.1)
