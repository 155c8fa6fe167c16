"""The suite-wide marker for tests that read the real datasets.

``@pytest.mark.needs_data("mnist", "fashion_mnist")`` skips a test, with the reason, unless
``../shared/datasets/tfds`` (next to the repository or the working directory, see
``vsml_jax.data.dirs``) exists and holds a prepared copy of each named dataset. Tests that
use the ``mnist_test`` fixture (``tests/data/conftest.py``) get ``needs_data("mnist")``
without saying so. A ``$VSML_DATA_DIR`` that points at a missing folder makes every such
test skip too (the library would refuse to run), naming the folder.
"""

from __future__ import annotations

import functools

import pytest

from vsml_jax.data.dirs import resolve_data_dirs, shared_tfds_dirs
from vsml_jax.data.sources import locate

MARKER = "needs_data"


@functools.cache
def missing_data(names: tuple[str, ...] = ()) -> str | None:
    """Why the real datasets ``names`` cannot be read here, or None when they can."""
    if not shared_tfds_dirs():
        return (
            "needs the real datasets in ../shared/datasets/tfds, which is absent "
            "(see vsml_jax/data/dirs.py for where data are looked up)"
        )
    try:
        resolve_data_dirs()
    except FileNotFoundError as e:
        return f"needs the real datasets: {e}"
    missing = [name for name in names if locate(name) is None]
    if missing:
        return (
            f"needs the real dataset(s) {', '.join(missing)}, not prepared in "
            f"{shared_tfds_dirs()[0]} (python -m vsml_jax.data prepare NAME)"
        )
    return None


def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"{MARKER}(*names): reads the real datasets; skipped when they are absent"
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = [n for mark in item.iter_markers(MARKER) for n in mark.args]
        if "mnist_test" in getattr(item, "fixturenames", ()):
            names.append("mnist")
        if not names and item.get_closest_marker(MARKER) is None:
            continue
        if reason := missing_data(tuple(sorted(set(names)))):
            item.add_marker(pytest.mark.skip(reason=reason))
