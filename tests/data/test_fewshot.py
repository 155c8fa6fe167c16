"""N-way K-shot episodes: class sets, shots before queries, relabelling, the query score."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from vsml_jax.data import DatasetArrays, EpisodeSpec, sample_episode, to_device
from vsml_jax.data.fewshot import FewShotSpec, query_accuracy, sample_fewshot_full

jit_full = jax.jit(sample_fewshot_full, static_argnums=2)


def _chars(classes=12, per_class=6, shape=(3, 3, 1)):
    """Image i holds value i everywhere; label i // per_class (grouped, like Omniglot)."""
    n = classes * per_class
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1) * np.ones(shape, np.uint8)
    labels = (np.arange(n) // per_class).astype(np.int32)
    return DatasetArrays("chars", "tiny", "train", images, labels, classes, 0.0, 1 / 255)


@pytest.fixture(scope="module")
def data():
    return to_device([_chars()])


@pytest.mark.parametrize("ways,shots,queries", [(5, 1, 1), (5, 2, 3), (3, 1, 4)])
def test_episode_structure(data, ways, shots, queries):
    spec = FewShotSpec(ways=ways, shots=shots, queries=queries)
    assert spec.length == ways * shots + queries and spec.num_classes == ways
    host_labels = np.asarray(data.labels)
    for seed in range(4):
        ep = jax.tree.map(np.asarray, jit_full(jax.random.PRNGKey(seed), data, spec))
        assert ep.xs.shape == (spec.length, 9) and ep.labels.shape == (spec.length,)
        # image i holds value i and the stats make standardising the identity
        np.testing.assert_allclose(ep.xs[:, 0], ep.indices, atol=1e-3)
        assert len(set(ep.indices.tolist())) == spec.length  # no example twice
        assert len(set(ep.classes.tolist())) == ways
        # episode label i is dataset class classes[i]
        np.testing.assert_array_equal(ep.classes[ep.labels], host_labels[ep.indices])
        support, query = ep.labels[: ways * shots], ep.labels[ways * shots :]
        np.testing.assert_array_equal(np.bincount(support, minlength=ways), [shots] * ways)
        assert query.shape == (queries,) and set(query.tolist()) <= set(range(ways))


def test_relabelled_per_episode(data):
    spec = FewShotSpec(ways=5)
    eps = [jit_full(jax.random.PRNGKey(s), data, spec) for s in range(8)]
    class_sets = {tuple(np.asarray(e.classes)) for e in eps}
    assert len(class_sets) == 8  # different classes and label assignments each episode
    # the first support example's label is not always the same class
    first = {int(e.classes[e.labels[0]]) for e in eps}
    assert len(first) > 1


def test_disjoint_pools_give_disjoint_classes():
    """Episodes only ever contain classes of the pool they are drawn from."""
    train = to_device([_chars(classes=8)])
    test_arrays = _chars(classes=8)
    test = to_device([test_arrays.replace(images=test_arrays.images + 100)])
    spec = FewShotSpec(ways=4, shots=2)
    seen_train = {int(i) for s in range(6) for i in jit_full(jax.random.PRNGKey(s), train, spec)[3]}
    seen_test = {int(i) for s in range(6) for i in jit_full(jax.random.PRNGKey(s), test, spec)[3]}
    values_train = {int(np.asarray(train.images)[i, 0]) for i in seen_train}
    values_test = {int(np.asarray(test.images)[i, 0]) for i in seen_test}
    assert max(values_train) < 100 <= min(values_test)


def test_sample_episode_dispatches_and_projects(data):
    spec = FewShotSpec(ways=4, shots=1, queries=2, input_dim=5, projection_prob=1.0)
    xs, labels = jax.jit(sample_episode, static_argnums=2)(jax.random.PRNGKey(0), data, spec)
    assert xs.shape == (6, 5) and labels.shape == (6,)
    # same key, with and without projection: the same examples and labels
    raw = jit_full(jax.random.PRNGKey(0), data, FewShotSpec(ways=4, shots=1, queries=2))
    np.testing.assert_array_equal(labels, raw.labels)


def test_query_accuracy():
    spec = FewShotSpec(ways=2, shots=1, queries=2)
    acc = np.array([[0, 0, 1, 0], [1, 1, 1, 1.0]])
    np.testing.assert_allclose(query_accuracy(acc, spec), [0.5, 1.0])
    with pytest.raises(ValueError, match="accuracy must be"):
        query_accuracy(acc[:, :3], spec)


def test_bad_specs(data):
    with pytest.raises(ValueError, match="ways must be an int >= 2"):
        FewShotSpec(ways=1)
    with pytest.raises(ValueError, match="shots must be"):
        FewShotSpec(shots=0)
    with pytest.raises(ValueError, match="need at least 20 classes"):
        FewShotSpec(ways=20).dims(data)
    with pytest.raises(ValueError, match="zero-padded"):
        FewShotSpec(input_dim=4).dims(data)
    with pytest.raises(ValueError, match="need 7 examples per class"):
        FewShotSpec(shots=5, queries=2).check_counts(np.asarray(data.labels))
    two = to_device([_chars(), _chars()])
    with pytest.raises(ValueError, match="one dataset"):
        FewShotSpec().dims(two)
    plain = EpisodeSpec(length=3)  # the plain spec has none of the few-shot fields
    assert plain.length == 3 and not hasattr(plain, "ways")


def test_query_only_fitness_weights(data):
    from vsml_jax.episode import episode_loss, run_episode
    from vsml_jax.learners import make_learner

    assert FewShotSpec(ways=3, shots=2).loss_weights is None
    spec = FewShotSpec(ways=3, shots=2, queries=2, fitness_steps="queries")
    assert spec.loss_weights == (0.0,) * 6 + (1.0,) * 2
    with pytest.raises(ValueError, match="fitness_steps must be"):
        FewShotSpec(fitness_steps="last")
    xs, labels = sample_episode(jax.random.PRNGKey(0), data, spec)
    ncm, key = make_learner("ncm"), jax.random.PRNGKey(1)
    loss = run_episode(ncm, {}, xs, labels, key, 3).loss
    weighted = episode_loss(ncm, {}, xs, labels, key, 3, spec.loss_weights)
    np.testing.assert_allclose(weighted, loss[-2:].mean(), rtol=1e-6)
