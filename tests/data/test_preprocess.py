"""Host-side preprocessing: grey, resize, pad, class filtering, stats."""

from __future__ import annotations

import numpy as np
import pytest

from vsml_jax.data import DatasetArrays, preprocess


def _rgb(n=4, h=6, w=8, name="cifar10"):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int32) % 3
    return DatasetArrays(name, "test", "train", images, labels, 10, 0.4733, 0.2504)


def test_dataset_arrays_validates():
    with pytest.raises(ValueError, match="int32"):
        DatasetArrays("x", "s", "t", np.zeros((2, 1, 1, 1), np.uint8), np.zeros(2), 2, 0, 1)
    with pytest.raises(ValueError, match="outside"):
        labels = np.array([0, 5], np.int32)
        DatasetArrays("x", "s", "t", np.zeros((2, 1, 1, 1), np.uint8), labels, 2, 0, 1)


def test_grey_is_bt601_luma_and_updates_stats():
    ds = _rgb()
    grey = preprocess.to_grey(ds)
    expected = np.rint(ds.images @ np.array([0.299, 0.587, 0.114]))
    np.testing.assert_array_equal(grey.images[..., 0], expected)
    assert grey.images.dtype == np.uint8 and grey.images.shape == (4, 6, 8, 1)
    assert (grey.mean, grey.std) == preprocess.STATS[("cifar10", 1, None)]
    assert preprocess.to_grey(grey) is grey


def test_resize_keeps_dtype_and_constant_images():
    ds = _rgb().replace(images=np.full((4, 6, 8, 3), 77, np.uint8))
    out = preprocess.resize(ds, (3, 5))
    assert out.images.shape == (4, 3, 5, 3) and out.images.dtype == np.uint8
    assert (out.images == 77).all()
    floats = ds.replace(images=np.ones((4, 6, 8, 1), np.float32), mean=0.0, std=1.0)
    out = preprocess.resize(floats, (12, 16))
    assert out.images.dtype == np.float32 and np.allclose(out.images, 1.0)
    assert (out.mean, out.std) == (0.0, 1.0)


@pytest.mark.parametrize(
    "shape, size",
    [
        ((28, 28, 1), (14, 14)),  # the meta-training format
        ((32, 32, 3), (28, 28)),  # CIFAR-10
        ((105, 105, 1), (4, 4)),  # Omniglot, many taps
        ((28, 28, 1), (5, 5)),  # non-integer factor
        ((12, 18, 3), (30, 45)),  # up
        ((8, 6, 1), (1, 1)),  # not square
        ((14, 21, 1), (6, 9)),
        ((28, 28, 1), (9, 40)),  # other scales: Pillow itself
    ],
)
def test_resize_of_uint8_images_is_pillows_bit_for_bit(shape, size):
    """The vectorised resize (two matrix products at equal scales) equals Pillow's
    ``resize(..., BILINEAR)`` of each image, saturated pixels included."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, *shape), dtype=np.uint8)
    images[:10] = rng.choice(np.array([0, 255], np.uint8), images[:10].shape)
    ds = _rgb().replace(images=images, labels=np.zeros(40, np.int32))
    got = preprocess.resize(ds, size).images
    want = np.stack([preprocess._resize_one(image, size) for image in images])
    np.testing.assert_array_equal(got, want)


def test_pad_centres_images():
    ds = _rgb(h=2, w=2)
    out = preprocess.pad(ds, (4, 5))
    assert out.images.shape == (4, 4, 5, 3)
    np.testing.assert_array_equal(out.images[:, 1:3, 1:3], ds.images)
    assert out.images[:, 0].max() == 0 and out.images[:, :, 3:].max() == 0
    mean_fill = preprocess.pad(ds, (4, 4), fill="mean")
    assert (mean_fill.images[:, 0] == round(0.4733 * 255)).all()
    with pytest.raises(ValueError, match="smaller"):
        preprocess.pad(ds, (1, 4))


def test_filter_classes_relabels():
    ds = _rgb(n=9)  # labels 0 1 2 0 1 2 0 1 2
    out = preprocess.filter_classes(ds, [2, 0])
    assert out.num_classes == 2 and len(out) == 6
    assert out.labels.tolist() == [1, 0, 1, 0, 1, 0]
    np.testing.assert_array_equal(out.images[0], ds.images[0])
    first = preprocess.filter_classes(ds, max_classes=2)
    assert first.num_classes == 2 and first.labels.tolist() == [0, 1, 0, 1, 0, 1]
    with pytest.raises(ValueError, match="no examples"):
        preprocess.filter_classes(ds, [7])
    with pytest.raises(ValueError, match="exactly one"):
        preprocess.filter_classes(ds)


def test_stats_lookup_falls_back_to_native_size():
    assert preprocess.standardisation_stats("mnist", 1, (32, 32)) == (0.1307, 0.3081)
    assert preprocess.standardisation_stats("omniglot", 1, (28, 28)) == (0.9238, 0.2133)
    with pytest.raises(ValueError, match="No standardisation stats"):
        preprocess.standardisation_stats("mnist", 3)


def test_compute_stats_reproduces_table(mnist_test):
    # The paper's MNIST stats are for the train split; the test split is close.
    assert preprocess.compute_stats(mnist_test) == pytest.approx((0.1307, 0.3081), abs=0.005)
