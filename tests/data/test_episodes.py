"""The device-resident episode sampler."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml_jax.data import (
    DatasetArrays,
    EpisodeSpec,
    load_split,
    preprocess,
    sample_episode,
    sample_episode_full,
    sample_episodes,
    sample_episodes_at,
    standardise,
    to_device,
)

jit_full = jax.jit(sample_episode_full, static_argnums=2)
jit_many = jax.jit(sample_episodes, static_argnums=(2, 3))
jit_batch = jax.jit(  # many episodes with their provenance: keys [N] -> Episode of [N, ...]
    lambda keys, data, spec: jax.vmap(lambda k: sample_episode_full(k, data, spec))(keys),
    static_argnums=2,
)


def _tiny(name, n, classes, shape=(4, 4, 1), offset=0):
    """A small uint8 dataset whose image i is filled with value offset + i."""
    images = (offset + np.arange(n, dtype=np.uint8)).reshape(n, 1, 1, 1) * np.ones(shape, np.uint8)
    labels = (np.arange(n) % classes).astype(np.int32)
    return DatasetArrays(name, "tiny", "train", images, labels, classes, 0.5, 0.25)


@pytest.fixture(scope="module")
def mnist_device(mnist_test):
    return to_device([mnist_test])


def test_to_device_layout():
    a, b = _tiny("a", 5, 3), _tiny("b", 7, 4, offset=100)
    data = to_device([a, b])
    assert data.images.shape == (12, 16) and data.images.dtype == jnp.uint8
    assert data.offsets.tolist() == [0, 5] and data.sizes.tolist() == [5, 7]
    assert data.member_classes.tolist() == [3, 4] and data.num_classes == 4
    assert data.input_shape == (4, 4, 1) and data.names == ("a", "b")
    np.testing.assert_allclose(data.scale, [1 / 255, 1 / 255])
    assert jax.tree.leaves(data)[0] is data.images  # a pytree of arrays only


def test_to_device_mixed_float_and_shape_errors():
    floats = load_split("sum", "train", num_examples=10)
    data = to_device([_tiny("a", 5, 3, shape=(28, 28, 1)), floats])
    assert data.images.dtype == jnp.float32
    np.testing.assert_allclose(data.scale, [1 / 255, 1.0])
    assert float(data.images[4, 0]) == 4.0  # uint8 members keep raw values
    with pytest.raises(ValueError, match="different image shapes.*image_size"):
        to_device([_tiny("a", 5, 3), floats])
    resized = to_device([_tiny("a", 5, 3), floats], image_size=(28, 28))
    assert resized.input_shape == (28, 28, 1)


def test_spec_validation():
    with pytest.raises(ValueError, match="length"):
        EpisodeSpec(length=0)
    with pytest.raises(ValueError, match="projection_prob"):
        EpisodeSpec(length=3, projection_prob=1.5)
    with pytest.raises(ValueError, match="dataset_probs"):
        EpisodeSpec(length=3, dataset_probs=(0.0, 0.0))
    spec = EpisodeSpec(length=3, dataset_probs=[1, 2])
    assert spec.dataset_probs == (1.0, 2.0) and hash(spec) == hash(
        EpisodeSpec(3, None, None, 0.0, False, False, (1, 2))
    )
    data = to_device([_tiny("a", 5, 3)])
    with pytest.raises(ValueError, match="zero-padded"):
        sample_episode(jax.random.key(0), data, EpisodeSpec(length=3, input_dim=8))
    with pytest.raises(ValueError, match="num_classes=2"):
        sample_episode(jax.random.key(0), data, EpisodeSpec(length=3, num_classes=2))
    with pytest.raises(ValueError, match="2 entries for 1 datasets"):
        sample_episode(jax.random.key(0), data, EpisodeSpec(length=3, dataset_probs=(1, 1)))


def test_early_steps_weight_the_first_steps_of_the_meta_loss():
    from vsml_jax.episode import episode_loss, run_episode
    from vsml_jax.learners import make_learner

    assert EpisodeSpec(length=5).loss_weights is None
    assert EpisodeSpec(length=5, early_steps=2, early_weight=1.0).loss_weights is None
    assert EpisodeSpec(length=5, early_steps=2, early_weight=3.0).loss_weights == (
        3.0, 3.0, 1.0, 1.0, 1.0,
    )  # fmt: skip
    assert EpisodeSpec(length=2, early_steps=9, early_weight=3.0).loss_weights == (3.0, 3.0)
    with pytest.raises(ValueError, match="early_steps must be an int >= 0"):
        EpisodeSpec(length=3, early_steps=-1)
    with pytest.raises(ValueError, match="early_weight must be a finite number > 0"):
        EpisodeSpec(length=3, early_weight=float("nan"))
    data = to_device([_tiny("a", 30, 3)])
    spec = EpisodeSpec(length=12, early_steps=4, early_weight=3.0)
    xs, labels = sample_episode(jax.random.key(0), data, spec)
    ncm, key = make_learner("ncm"), jax.random.key(1)
    loss = np.asarray(run_episode(ncm, {}, xs, labels, key, 3).loss)
    weighted = episode_loss(ncm, {}, xs, labels, key, 3, spec.loss_weights)
    expected = (3 * loss[:4].sum() + loss[4:].sum()) / (3 * 4 + 8)
    np.testing.assert_allclose(weighted, expected, rtol=1e-6)


def test_input_gain_scales_each_task_by_one_log_uniform_gain():
    """data.input_gain: one gain per task, in [lo, hi], on the same examples and labels
    as without it (its own key), so episodes without a gain are unchanged."""
    data = to_device([_tiny("a", 30, 3)])
    plain = EpisodeSpec(length=12)
    gains = []
    for i in range(20):
        key = jax.random.key(i)
        xs, labels = sample_episode(key, data, plain)
        gxs, glabels = sample_episode(key, data, dataclasses.replace(plain, input_gain=(0.5, 2)))
        np.testing.assert_array_equal(labels, glabels)
        ratio = np.asarray(gxs) / np.asarray(xs)
        np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)
        gains.append(ratio.flat[0])
    assert 0.5 <= min(gains) < 0.8 and 1.25 < max(gains) <= 2.0
    fixed, _ = sample_episode(
        jax.random.key(0), data, dataclasses.replace(plain, input_gain=(3, 3))
    )
    np.testing.assert_allclose(
        fixed, 3 * sample_episode(jax.random.key(0), data, plain)[0], rtol=1e-6
    )
    for bad in ((0, 1), (2, 1), (1,), (1, float("inf"))):
        with pytest.raises(ValueError, match="input_gain must be"):
            EpisodeSpec(length=3, input_gain=bad)


def test_class_gain_scales_each_class_by_its_own_log_uniform_gain():
    """data.class_gain: within a task, every example of a class is multiplied by the same
    gain in [lo, hi], the classes by different ones; examples and labels as without it."""
    data = to_device([_tiny("a", 60, 3)])
    plain = EpisodeSpec(length=40)
    spec = dataclasses.replace(plain, class_gain=(0.5, 2))
    gains = []
    for i in range(10):
        key = jax.random.key(i)
        xs, labels = sample_episode(key, data, plain)
        gxs, glabels = sample_episode(key, data, spec)
        np.testing.assert_array_equal(labels, glabels)
        ratio = np.asarray(gxs) / np.asarray(xs)
        labels = np.asarray(labels)
        per_class = []
        for c in np.unique(labels):
            np.testing.assert_allclose(ratio[labels == c], ratio[labels == c].flat[0], rtol=1e-5)
            per_class.append(ratio[labels == c].flat[0])
        assert len(set(np.round(per_class, 4))) == len(per_class) > 1
        gains += per_class
    assert 0.5 <= min(gains) < 0.8 and 1.25 < max(gains) <= 2.0
    with pytest.raises(ValueError, match="class_gain must be"):
        EpisodeSpec(length=3, class_gain=(2, 1))


def test_shapes_determinism_and_label_range(mnist_device):
    spec = EpisodeSpec(
        length=50,
        input_dim=800,
        num_classes=12,
        projection_prob=0.5,
        permute_pixels=True,
        permute_labels=True,
    )
    key = jax.random.key(0)
    xs, labels = jit_many(key, mnist_device, spec, 6)
    assert xs.shape == (6, 50, 800) and xs.dtype == jnp.float32
    assert labels.shape == (6, 50) and labels.dtype == jnp.int32
    assert 0 <= int(labels.min()) and int(labels.max()) < 10
    xs2, labels2 = jit_many(key, mnist_device, spec, 6)
    np.testing.assert_array_equal(xs, xs2)
    np.testing.assert_array_equal(labels, labels2)
    xs3, _ = jit_many(jax.random.key(1), mnist_device, spec, 6)
    assert not np.array_equal(xs, xs3)


def test_standardised_statistics_on_mnist(mnist_device):
    xs, _ = sample_episode(jax.random.key(2), mnist_device, EpisodeSpec(length=2000))
    assert abs(float(xs.mean())) < 0.05 and abs(float(xs.std()) - 1) < 0.05


def test_unprojected_episode_is_standardised_pixels(mnist_test, mnist_device):
    ep = jit_full(jax.random.key(3), mnist_device, EpisodeSpec(length=40))
    rows = mnist_test.images.reshape(len(mnist_test), -1)[np.asarray(ep.indices)]
    expected = (rows.astype(np.float32) / 255 - np.float32(0.1307)) / np.float32(0.3081)
    np.testing.assert_allclose(ep.xs, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(
        ep.xs, jax.jit(standardise)(mnist_device, ep.dataset, mnist_device.images[ep.indices])
    )
    np.testing.assert_array_equal(ep.labels, mnist_test.labels[np.asarray(ep.indices)])
    assert not bool(ep.projected)


def test_zero_padding_and_projection():
    data = to_device([_tiny("a", 6, 3)])
    padded = sample_episode_full(jax.random.key(0), data, EpisodeSpec(length=5, input_dim=20))
    np.testing.assert_array_equal(padded.xs[:, 16:], 0.0)
    spec = EpisodeSpec(length=5, input_dim=3, projection_prob=1.0)  # D=16 > A=3 is fine
    projected = sample_episode_full(jax.random.key(0), data, spec)
    assert projected.xs.shape == (5, 3) and bool(projected.projected)
    half = EpisodeSpec(length=5, input_dim=16, projection_prob=0.5)
    flags = [bool(jit_full(jax.random.key(i), data, half).projected) for i in range(40)]
    assert 5 < sum(flags) < 35


def _label_maps(eps, true_labels):
    """Per episode, the map true label -> episode label, as ``[episodes, classes]`` with
    -1 for classes the episode did not draw. Asserts that the map is a function: every
    example of a class gets the same episode label (classes are relabelled, not images)."""
    true = true_labels[np.asarray(eps.indices)]
    labels = np.asarray(eps.labels)
    maps = np.full((len(labels), int(true_labels.max()) + 1), -1)
    for i in range(len(labels)):
        for t, y in zip(true[i], labels[i], strict=True):
            assert maps[i, t] in (-1, y), f"episode {i}: class {t} got labels {maps[i, t]}, {y}"
            maps[i, t] = y
    return maps


def test_pixel_and_label_permutations_are_fresh_permutations_per_task():
    rng = np.random.default_rng(0)
    images = rng.permutation(16 * 4).reshape(4, 4, 4, 1).astype(np.uint8)  # distinct pixels
    ds = DatasetArrays("p", "tiny", "train", images, np.arange(4, dtype=np.int32), 4, 0.0, 1.0)
    data = to_device([ds])
    spec = EpisodeSpec(length=40, permute_pixels=True, permute_labels=True)
    eps = jit_batch(jax.random.split(jax.random.key(5), 300), data, spec)
    # pixels: one permutation for all examples of a task, never the identity
    raw = np.rint(np.asarray(eps.xs[0]) * 255).astype(int)  # mean 0, std 1: x = pixel / 255
    original = images.reshape(4, -1)[np.asarray(eps.indices[0])]
    for row, orig in zip(raw, original, strict=True):
        assert sorted(row) == sorted(orig) and not np.array_equal(row, orig)
    perm = np.argsort(original[0])[np.argsort(np.argsort(raw[0]))]
    np.testing.assert_array_equal(raw, original[:, perm])
    # labels: a bijection of the 4 classes in every task (40 draws see all 4 almost surely)
    maps = _label_maps(eps, ds.labels)
    full = maps[(maps >= 0).all(axis=1)]
    assert len(full) > 290
    for row in full:
        assert sorted(row.tolist()) == [0, 1, 2, 3], row
    # drawn afresh per task: each class takes each label about equally often (75 of 300),
    # and most of the 24 permutations occur
    for c in range(4):
        counts = np.bincount(full[:, c], minlength=4)
        assert counts.min() > 40, (c, counts)
    assert len({tuple(row) for row in full}) >= 20


def test_labels_permuted_within_each_members_classes():
    data = to_device([_tiny("a", 6, 2), _tiny("b", 6, 5, offset=50)])
    spec = EpisodeSpec(length=30, permute_labels=True, dataset_probs=(1.0, 0.0))
    maps = _label_maps(jit_batch(jax.random.split(jax.random.key(0), 40), data, spec), data.labels)
    assert (maps[:, 2:] == -1).all()  # only member a's two classes are drawn
    full = maps[(maps[:, :2] >= 0).all(axis=1), :2]
    assert len(full) > 35 and set(full.ravel().tolist()) <= {0, 1}  # relabelled within {0, 1}
    assert (full.sum(axis=1) == 1).all()  # a bijection of {0, 1}
    assert 5 < (full[:, 0] == 1).sum() < len(full) - 5  # swapped in some tasks, not all


def test_mixture_draws_from_each_member():
    data = to_device([_tiny("a", 5, 3), _tiny("b", 7, 3, offset=100), _tiny("c", 3, 3, offset=200)])
    run = jax.jit(
        jax.vmap(
            functools.partial(
                sample_episode_full, data=data, spec=EpisodeSpec(length=4, dataset_probs=(1, 1, 2))
            )
        )
    )
    eps = run(jax.random.split(jax.random.key(0), 400))
    members = np.asarray(eps.dataset)
    counts = np.bincount(members, minlength=3)
    assert counts.min() > 50 and counts[2] > counts[0]
    offsets, sizes = np.array([0, 5, 12]), np.array([5, 7, 3])
    idx = np.asarray(eps.indices)
    assert ((idx >= offsets[members][:, None]) & (idx < (offsets + sizes)[members][:, None])).all()
    pixel = np.rint((np.asarray(eps.xs[:, :, 0]) * 0.25 + 0.5) * 255)
    np.testing.assert_array_equal(pixel, np.asarray(data.images[idx, 0]))
    np.testing.assert_array_equal(eps.labels, np.asarray(data.labels)[idx])  # not permuted
    only_c = EpisodeSpec(length=4, dataset_probs=(0, 0, 1))
    assert int(jit_full(jax.random.key(1), data, only_c).dataset) == 2


def test_float_members_are_not_rescaled():
    ds = load_split("sum", "train", num_examples=30)
    ep = jit_full(jax.random.key(0), to_device([ds]), EpisodeSpec(length=10))
    np.testing.assert_array_equal(ep.xs, ds.images.reshape(30, -1)[np.asarray(ep.indices)])


def test_grey_resize_in_to_device():
    rgb = _tiny("cifar10", 4, 2, shape=(8, 8, 3)).replace(mean=0.4733, std=0.2504)
    data = to_device([rgb], image_size=(4, 4), grey=True)
    assert data.input_shape == (4, 4, 1)
    assert data.mean.tolist() == pytest.approx([preprocess.STATS[("cifar10", 1, None)][0]])


def test_class_subsets_draw_only_the_chosen_classes_relabelled():
    data = to_device([_tiny("a", 40, 10), _tiny("b", 30, 10, offset=100)])
    spec = EpisodeSpec(length=60, class_subset_sizes=(3, 6), dataset_probs=(0.0, 1.0))
    run = jax.jit(jax.vmap(functools.partial(sample_episode_full, data=data, spec=spec)))
    eps = run(jax.random.split(jax.random.key(0), 64))
    original = np.asarray(data.labels)[np.asarray(eps.indices)]  # the member's own labels
    idx, labels = np.asarray(eps.indices), np.asarray(eps.labels)
    assert ((idx >= 40) & (idx < 70)).all()  # only member b
    seen_sizes, subsets = set(), set()
    for orig, new in zip(original, labels, strict=True):
        pairs = set(zip(orig.tolist(), new.tolist(), strict=True))
        assert len({o for o, _ in pairs}) == len(pairs) == len({n for _, n in pairs})  # bijection
        k = len(pairs)
        assert k in (2, 3, 5, 6) and set(new.tolist()) <= set(range(6))  # 60 draws see most
        assert max(new) < (3 if k <= 3 else 6)
        seen_sizes.add(3 if k <= 3 else 6)
        subsets.add(frozenset(orig.tolist()))
    assert seen_sizes == {3, 6} and len(subsets) > 20


def test_class_subset_sizes_are_checked():
    with pytest.raises(ValueError, match="class_subset_sizes must be positive ints"):
        EpisodeSpec(length=5, class_subset_sizes=(0,))
    data = to_device([_tiny("a", 12, 4)])
    with pytest.raises(ValueError, match="ask for more classes"):
        EpisodeSpec(length=5, class_subset_sizes=(5,)).dims(data)


def test_curriculum_draws_easier_tasks_first_then_the_spec():
    data = to_device([_tiny("a", 60, 6)])
    spec = EpisodeSpec(length=40)
    stages = (
        (3, dataclasses.replace(spec, class_subset_sizes=(2,))),
        (5, dataclasses.replace(spec, class_subset_sizes=(4,))),
    )
    at = jax.jit(sample_episodes_at, static_argnums=(2, 3, 5))
    for step, classes in ((0, 2), (2, 2), (3, 4), (4, 4), (5, 6), (100, 6)):
        _, labels = at(jax.random.key(step), data, spec, 8, jnp.int32(step), stages)
        assert {len(np.unique(row)) for row in np.asarray(labels)} == {classes}, step
        assert int(labels.max()) == classes - 1
    xs, labels = sample_episodes_at(jax.random.key(1), data, spec, 4, 0)
    np.testing.assert_array_equal(labels, sample_episodes(jax.random.key(1), data, spec, 4)[1])
    with pytest.raises(ValueError, match="must increase"):
        sample_episodes_at(jax.random.key(1), data, spec, 4, 0, ((5, spec), (5, spec)))


def test_fixed_projection_is_shared_by_every_unprojected_task():
    data = to_device([_tiny("a", 60, 6)])  # D = 16
    with pytest.raises(ValueError, match="zero-padded"):
        EpisodeSpec(length=5, input_dim=4, projection_prob=0.5).dims(data)
    fixed = EpisodeSpec(length=5, input_dim=4, projection_prob=0.0, fixed_projection=True)
    one, two = (jit_full(jax.random.key(i), data, fixed) for i in (1, 2))
    x = standardise(data, 0, data.images[one.indices])
    w = np.linalg.lstsq(np.asarray(x), np.asarray(one.xs), rcond=None)[0]
    x2 = standardise(data, 0, data.images[two.indices])
    np.testing.assert_allclose(np.asarray(x2) @ w, two.xs, atol=1e-4)  # the same map
    fresh = dataclasses.replace(fixed, projection_prob=1.0)
    three = jit_full(jax.random.key(2), data, fresh)
    assert not np.allclose(np.asarray(x2) @ w, three.xs, atol=1e-3)
