"""The suite-wide marker for tests that read the real datasets, and the run's XLA cache.

``@pytest.mark.needs_data("mnist", "fashion_mnist")`` skips a test, with the reason, unless
``../shared/datasets/tfds`` (next to the repository or the working directory, see
``vsml_jax.data.dirs``) exists and holds a prepared copy of each named dataset. Tests that
use the ``mnist_test`` fixture (``tests/data/conftest.py``) get ``needs_data("mnist")``
without saying so. A ``$VSML_DATA_DIR`` that points at a missing folder makes every such
test skip too (the library would refuse to run), naming the folder.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile

import jax
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


# One persistent XLA compilation cache for the whole run, shared by the xdist workers and
# the command-line subprocesses the end-to-end tests start (which otherwise compile the same
# small programs again in every run, resume and kill-and-resume; the suite takes about a
# quarter less time with it). A fresh folder per run, removed at its end; a set
# JAX_COMPILATION_CACHE_DIR is used as it is (empty: no cache). The size limit turns on the
# cache's file lock, so that concurrent processes never read a half-written entry.
CACHE_OPTIONS = {  # jax option: (its environment variable, value)
    "jax_persistent_cache_min_compile_time_secs": ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", 0),
    "jax_persistent_cache_min_entry_size_bytes": ("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", 0),
    "jax_compilation_cache_max_size": ("JAX_COMPILATION_CACHE_MAX_SIZE", 4 << 30),
}
_OWN_CACHE = pytest.StashKey[str]()

# The suite compiles hundreds of small programs and runs each briefly, so LLVM's
# optimisation of the generated CPU code is much of its time: level 2 (XLA's default is
# 3) cuts the time of a compile-bound end-to-end test by about a quarter and keeps the
# vectorised code that runtime-bound tests (a 784 x 10 grid) need. Level 0 would cut
# compiles a little more but runs such a test 5 times slower, and its scalar tanh gives
# tanh(x) = 1 - 1.8e-7 for 8 < x < 20 where the optimised code rounds to 1 (which the
# constructed clone's forget gate, sigmoid(30) = (1 + tanh(15)) / 2, relies on).
# XLA's older loop emitters (--xla_cpu_use_fusion_emitters=false) compile the suite's
# small programs faster still: the suite took 438 s instead of 491 s with them, every test
# passing (results differ from the default emitters' by float rounding at most). Without
# LLVM's expensive passes and with each program's code generated as one module (XLA splits
# it for parallel compilation otherwise, which on 2 cores shared by two workers only adds
# work), a compile-bound sample of the suite (la_cloning's and evaluate's end-to-end tests,
# the layers', backprop's and the shipped learners' tests) took 200 s of CPU instead of
# 235 s, run alone, every test passing.
# Subprocesses inherit the flags through the environment (tests that set their own
# XLA_FLAGS append to :func:`xla_flags`).
TEST_XLA_FLAGS = (
    "--xla_backend_optimization_level=2 --xla_cpu_use_fusion_emitters=false "
    "--xla_llvm_disable_expensive_passes=true --xla_cpu_parallel_codegen_split_count=1"
)


def xla_flags(*extra: str) -> str:
    """``XLA_FLAGS`` for a test's subprocess: the suite's flags and ``extra``."""
    return " ".join([os.environ.get("XLA_FLAGS", ""), *extra]).strip()


def pytest_configure(config):
    if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):  # read at the first backend
        os.environ["XLA_FLAGS"] = xla_flags(TEST_XLA_FLAGS)
    config.addinivalue_line(
        "markers", f"{MARKER}(*names): reads the real datasets; skipped when they are absent"
    )
    config.addinivalue_line(
        "markers", "needs_kernel: runs the fused CPU kernel; skipped where it cannot build"
    )
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the controller, or a run without xdist
        config.stash[_OWN_CACHE] = tempfile.mkdtemp(prefix="vsml-jax-tests-xla-cache-")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = config.stash[_OWN_CACHE]
    # this process imported jax before this hook ran, when jax's config read the environment
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    for option, (env, value) in CACHE_OPTIONS.items():
        os.environ.setdefault(env, str(value))
        jax.config.update(option, type(value)(os.environ[env]))


def pytest_unconfigure(config):
    if own := config.stash.get(_OWN_CACHE, None):
        shutil.rmtree(own, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = [n for mark in item.iter_markers(MARKER) for n in mark.args]
        if "mnist_test" in getattr(item, "fixturenames", ()):
            names.append("mnist")
        if not names and item.get_closest_marker(MARKER) is None:
            continue
        if reason := missing_data(tuple(sorted(set(names)))):
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_setup(item):
    if item.get_closest_marker("needs_kernel") is not None:
        from vsml_jax.vsml import kernel

        if not kernel.available():  # builds the kernel once, for the first test that needs it
            pytest.skip("the fused kernel needs a C++ compiler and an AVX-512 CPU")
