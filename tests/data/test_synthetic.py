"""The synthetic 'random' and 'sum' datasets."""

from __future__ import annotations

import numpy as np
import pytest

from vsml_jax.data import load_split, preprocess


def test_random_shapes_and_determinism():
    ds = load_split("random", "train")
    assert ds.images.shape == (20, 28, 28, 1) and ds.images.dtype == np.float32
    assert ds.num_classes == 10 and ds.labels.dtype == np.int32 and ds.labels.max() < 10
    assert (ds.mean, ds.std, ds.source) == (0.0, 1.0, "synthetic:random")
    again = load_split("random", "train")
    np.testing.assert_array_equal(ds.images, again.images)
    np.testing.assert_array_equal(ds.labels, again.labels)
    other = load_split("random", "test")
    assert not np.array_equal(ds.images, other.images)
    assert not np.array_equal(ds.images, load_split("random", "train", seed=1).images)


def test_sum_labels_balanced_and_correct():
    ds = load_split("sum", "train", num_examples=4000)
    assert ds.images.shape == (4000, 28, 28, 1) and ds.num_classes == 2
    assert 0.45 < ds.labels.mean() < 0.55
    np.testing.assert_array_equal(ds.labels, ds.images.sum(axis=(1, 2, 3)) > 0)
    mean, std = preprocess.compute_stats(ds)
    assert abs(mean) < 0.05 and abs(std - 1) < 0.05
    again = load_split("sum", "train", num_examples=4000)
    np.testing.assert_array_equal(ds.images, again.images)
    assert len(load_split("sum", "test")) == 10_000


def test_sum_pixels_are_truncated_around_the_mean():
    ds = load_split("sum", "test", num_examples=200)
    x = ds.images.reshape(200, -1).astype(np.float64)
    spread = x.max(axis=1) - x.min(axis=1)
    scale = np.sqrt(1 / 3 + 0.7737)  # std of U(-1, 1) + N(0, 1) truncated to [-2, 2]
    assert spread.max() <= 4 / scale + 1e-5


def test_synthetic_unknown_split():
    with pytest.raises(ValueError, match="available splits: train, test"):
        load_split("sum", "valid")
