import jax
import numpy as np
import pytest

from tests.learners.utils import batch_results, check_protocol, fast_jit, prototype_episodes
from vsml_jax.episode import run_episode
from vsml_jax.learners import make_learner
from vsml_jax.learners.base import Feedback, TaskSpec
from vsml_jax.learners.knn import knn, one_nn


def reference_logits(xs, labels, k, memory, num_classes):
    """Direct k-NN: at step t, sort the last ``memory`` labelled examples by distance."""
    T = len(xs)
    out = np.zeros((T, num_classes))
    for t in range(T):
        lo = max(0, t - memory)
        mem_x, mem_y = xs[lo:t], labels[lo:t]
        if t == lo:
            continue  # empty memory: all logits 0
        dist = ((mem_x - xs[t]) ** 2).sum(-1)
        order = np.argsort(dist, kind="stable")[:k]
        for rank, j in enumerate(order):
            c = mem_y[j]
            if out[t, c] == 0:  # the nearest voter of class c sets the tie-break term
                out[t, c] = 0.5 * (k - rank) / k
            out[t, c] += 1.0
    return out


def episode_logits(learner, xs, labels, num_classes):
    run = fast_jit(lambda x, y: run_episode(learner, {}, x, y, jax.random.key(0), num_classes))
    return np.asarray(run(xs, labels).logits)


@pytest.mark.parametrize("learner", [knn(), one_nn()], ids=["knn", "1nn"])
def test_protocol(learner):
    assert check_protocol(learner) == {}


def test_registry_names_and_bad_k():
    assert make_learner("knn").name == "knn" and make_learner("1nn").name == "1nn"
    assert make_learner("knn", k=3, memory=10).name == "knn"
    with pytest.raises(ValueError, match="1 <= k <= memory"):
        knn(k=5, memory=4)


@pytest.mark.parametrize(
    "k,memory",
    [(1, 64), (3, 64), (4, 64), (3, 7), (1, 5)],
    ids=["1nn", "k3", "k4-ties", "k3-wrap", "1nn-wrap"],
)
def test_matches_direct_knn(k, memory):
    """The ring buffer + top_k path equals sorting the last ``memory`` examples; with
    memory < episode length the buffer wraps around several times."""
    T, D, C = 40, 4, 3
    rng = np.random.default_rng(k * 100 + memory)
    xs = rng.normal(size=(T, D)).astype(np.float32)
    labels = rng.integers(0, C, size=T)
    got = episode_logits(knn(k=k, memory=memory), xs, labels, C)
    want = reference_logits(xs, labels, k, memory, C)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # predictions too: vote count first, then the class with the nearer voter
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))


def test_ring_buffer_keeps_the_last_memory_examples():
    M, D, C = 4, 2, 3
    learner = knn(k=2, memory=M)
    state = learner.init({}, TaskSpec(D, C), jax.random.key(0))
    step = fast_jit(learner.step)
    feedback = Feedback.zeros(C)
    xs = np.arange(7 * D, dtype=np.float32).reshape(7, D)
    for t, x in enumerate(xs):
        state, _ = step({}, state, x, feedback)
        label = np.eye(C, dtype=np.float32)[t % C]
        feedback = Feedback(np.zeros(C, np.float32), label)
    # examples 0..5 have been stored (6 has no label yet): slots hold 4, 5, 2, 3
    assert int(state.count) == 6
    np.testing.assert_array_equal(np.asarray(state.xs), xs[[4, 5, 2, 3]])
    np.testing.assert_array_equal(np.asarray(state.labels), [1, 2, 2, 0])
    np.testing.assert_array_equal(np.asarray(state.prev_x), xs[6])


def test_first_steps():
    """Step 0: empty memory, no class preferred. Step 1: one stored example, which wins
    for every k (all stored examples vote while fewer than k are stored)."""
    C = 4
    for learner in (knn(k=5), one_nn()):
        state = learner.init({}, TaskSpec(3, C), jax.random.key(0))
        state, logits = learner.step({}, state, np.ones(3, np.float32), Feedback.zeros(C))
        np.testing.assert_array_equal(np.asarray(logits), np.zeros(C))
        assert int(state.count) == 0 and (np.asarray(state.labels) == -1).all()
        label = np.eye(C, dtype=np.float32)[2]
        state, logits = learner.step(
            {}, state, -np.ones(3, np.float32), Feedback(np.zeros(C), label)
        )
        assert int(np.argmax(logits)) == 2 and int(state.count) == 1
        assert np.count_nonzero(np.asarray(logits)) == 1


def test_1nn_memorises_a_repeated_stream():
    """Random examples with random labels, shown three times: from the second pass on
    1-NN is always right, also with a memory of exactly one pass (wrap-around)."""
    N, D, C = 25, 6, 5
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    y = rng.integers(0, C, size=N)
    xs, labels = np.tile(x, (3, 1)), np.tile(y, 3)
    for memory in (N, 3 * N):
        acc = np.asarray(
            fast_jit(lambda a, b, m=memory: run_episode(one_nn(m), {}, a, b, jax.random.key(0), C))(
                xs, labels
            ).accuracy
        )
        assert acc[N:].mean() == 1.0, memory


@pytest.mark.parametrize("learner", [knn(), one_nn()], ids=["knn", "1nn"])
def test_learns_within_episode(learner):
    xs, labels = prototype_episodes(jax.random.key(3), 32, length=60)
    acc = np.asarray(batch_results(learner, {}, xs, labels, jax.random.key(4)).accuracy)
    assert acc[:, 30:].mean() > 0.9 > acc[:, :3].mean()
