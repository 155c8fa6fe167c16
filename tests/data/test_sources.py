"""Reading real datasets: resolution, caching, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from vsml_jax.data import (
    DatasetNotFoundError,
    load_split,
    preprocess,
    resolve_data_dirs,
    tfds_reader,
)
from vsml_jax.data import cache as cache_lib
from vsml_jax.data.dirs import shared_tfds_dirs


def _no_tfds(*args, **kwargs):
    raise AssertionError("TFDS was opened although the split is cached")


@pytest.mark.needs_data("mnist")
def test_mnist_test_split_then_cache(tmp_path, monkeypatch):
    decoded = []  # count the decodes of the array_record files

    def counting_decode(src):
        decoded.append(src)
        return decode_all(src)

    decode_all = tfds_reader.decode_all
    monkeypatch.setattr(tfds_reader, "decode_all", counting_decode)
    ds = load_split("mnist", "test", cache_dir=tmp_path)
    assert len(decoded) == 1
    assert (ds.name, ds.source, ds.split) == ("mnist", "mnist:3.0.1", "test")
    assert ds.images.shape == (10000, 28, 28, 1) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int32 and set(np.unique(ds.labels)) == set(range(10))
    assert (ds.num_classes, ds.mean, ds.std) == (10, 0.1307, 0.3081)
    cached = tmp_path / "mnist-3.0.1" / "test.npz"
    umask = os.umask(0)
    os.umask(umask)
    assert cached.is_file() and cached.stat().st_mode & 0o777 == 0o666 & ~umask  # not 0600
    assert not list(tmp_path.rglob("*.tmp*"))
    monkeypatch.setattr(tfds_reader, "open_source", _no_tfds)
    again = load_split("mnist", "test", cache_dir=tmp_path)
    assert len(decoded) == 1  # the second load read the cache file, not the records
    np.testing.assert_array_equal(again.images, ds.images)
    np.testing.assert_array_equal(again.labels, ds.labels)


@pytest.mark.needs_data("mnist")
def test_cache_dir_from_env(mnist_test, cache_root, monkeypatch):
    assert (cache_root / "mnist-3.0.1" / "test.npz").is_file()
    monkeypatch.setattr(tfds_reader, "open_source", _no_tfds)
    assert len(load_split("mnist", "test")) == len(mnist_test)


def test_corrupt_cache_is_ignored(tmp_path):
    path = cache_lib.cache_path(tmp_path, "emnist/balanced:3.1.0", "test")
    assert path == tmp_path / "emnist-balanced-3.1.0" / "test.npz"
    path.parent.mkdir()
    path.write_bytes(b"not a zip")
    assert cache_lib.read(path) is None
    cache_lib.write(path, np.zeros((2, 1, 1, 1), np.uint8), np.arange(2, dtype=np.int32), 3)
    images, labels, num_classes = cache_lib.read(path)
    assert images.shape == (2, 1, 1, 1) and labels.tolist() == [0, 1] and num_classes == 3


@pytest.mark.needs_data("kmnist")
def test_kmnist_is_test_only():
    ds = load_split("kmnist", "test")
    assert ds.source == "kmnist_testonly:3.0.1" and ds.images.shape == (10000, 28, 28, 1)
    with pytest.raises(ValueError, match=r"Unknown split 'train'.*kmnist_testonly.*: test$"):
        load_split("kmnist", "train")


@pytest.mark.needs_data("cifar10")
def test_cifar10_grey_resized():
    ds = load_split("cifar10", "test")
    assert ds.source == "cifar10_jpeg75:1.0.0" and ds.images.shape == (10000, 32, 32, 3)
    small = preprocess.resize(preprocess.to_grey(ds), (28, 28))
    assert small.images.shape == (10000, 28, 28, 1) and small.images.dtype == np.uint8
    assert (small.mean, small.std) == preprocess.STATS[("cifar10", 1, (28, 28))]
    assert preprocess.compute_stats(small) == pytest.approx((small.mean, small.std), abs=0.01)


@pytest.mark.needs_data("omniglot")
def test_omniglot_small_split_aliases():
    ds = load_split("omniglot", "train")
    assert ds.source == "omniglot_small:3.0.0" and ds.images.shape == (2720, 105, 105, 3)
    assert ds.num_classes == 1623 and len(np.unique(ds.labels)) == 136


def test_emnist_through_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        ds = load_split("emnist", "train")
    assert ds.source == "emnist/balanced:3.1.0" and ds.num_classes == 47
    assert ds.images.shape == (12, 28, 28, 1) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int32 and ds.labels.max() < 47
    assert (ds.mean, ds.std) == (0.1751, 0.3332)


def test_emnist_missing_is_one_clear_error(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_split("emnist", "test", data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, FileNotFoundError)
    assert "'emnist'" in message and "emnist/balanced:3.1.0" in message
    assert "python -m vsml_jax.data prepare emnist" in message
    for d in resolve_data_dirs(tmp_path):
        assert str(d) in message


def test_missing_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_split("mnist", "test", data_dir=tmp_path / "nope")


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match="Unknown dataset 'mnsit'.*fashion_mnist.*omniglot"):
        load_split("mnsit", "train")


@pytest.mark.needs_data("mnist")
def test_unknown_split_lists_available():
    with pytest.raises(ValueError, match="Unknown split 'valid'.*available splits: train, test"):
        load_split("mnist", "valid")


def test_synthetic_options_rejected_for_real_data():
    with pytest.raises(ValueError, match="synthetic"):
        load_split("mnist", "test", num_examples=5)


def test_resolve_data_dirs_order(tmp_path, monkeypatch):
    explicit, env, default = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    explicit.mkdir()
    env.mkdir()
    monkeypatch.setenv("VSML_DATA_DIR", str(env))
    monkeypatch.setenv("TFDS_DATA_DIR", str(default))
    assert resolve_data_dirs(explicit) == [explicit]  # given, it is the only dir searched
    assert resolve_data_dirs() == [env, *shared_tfds_dirs(), default]


def test_explicit_data_dir_with_a_prepared_copy_wins(tmp_path, monkeypatch):
    folder = tmp_path / "mnist" / "3.0.1"
    folder.mkdir(parents=True)
    (folder / "dataset_info.json").write_text('{"splits": [{"name": "test"}]}')
    (folder / "mnist-test.array_record-00000-of-00001").write_bytes(b"")
    seen = {}

    def fake_open(name, split, data_dir):
        seen.update(name=name, split=split, data_dir=data_dir)
        raise RuntimeError("stop")

    monkeypatch.setattr(tfds_reader, "open_source", fake_open)
    with pytest.raises(ValueError, match=r"cannot read .*\(RuntimeError: stop\)"):
        load_split("mnist", "test", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert seen == {"name": "mnist:3.0.1", "split": "test", "data_dir": tmp_path}
