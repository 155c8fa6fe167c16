"""Fixtures for the data tests: hermetic dirs, one shared cache, small real datasets.

Tests that use ``mnist_test`` are skipped when MNIST is absent (``tests/conftest.py``)."""

from __future__ import annotations

import pytest

from vsml_jax.data import load_split


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory):
    """One cache for the session, so each real split is decoded once."""
    return tmp_path_factory.mktemp("vsml_cache")


@pytest.fixture(autouse=True)
def hermetic_dirs(monkeypatch, tmp_path_factory, cache_root):
    """Ignore the user's env and ~/tensorflow_datasets; cache into a tmp dir."""
    monkeypatch.setenv("VSML_CACHE_DIR", str(cache_root))
    monkeypatch.delenv("VSML_DATA_DIR", raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path_factory.mktemp("empty_tfds")))


@pytest.fixture(scope="session")
def mnist_test(cache_root):
    """The real MNIST test split (decoded once per session)."""
    return load_split("mnist", "test", cache_dir=cache_root)
