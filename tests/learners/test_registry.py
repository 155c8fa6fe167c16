import pytest

from vsml_jax.learners import LEARNERS, make_learner
from vsml_jax.learners.base import Learner

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
    learner = make_learner(name)
    assert isinstance(learner, Learner)
    assert learner.name == name


def test_make_learner_kwargs():
    assert make_learner("adam", lr=0.01, hidden=()).name == "adam"


def test_unknown_learner():
    with pytest.raises(ValueError, match="Unknown learner 'nope'.*sgd"):
        make_learner("nope")


def test_unknown_kwarg():
    with pytest.raises(ValueError, match=r"\['lrr'\].*'sgd'.*lr"):
        make_learner("sgd", lrr=0.1)
