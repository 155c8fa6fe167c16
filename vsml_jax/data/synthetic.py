"""The paper's synthetic datasets, as float32 ``DatasetArrays`` (already standardised).

* ``random``: 20 fixed Gaussian ``N(0, 1)`` images of 28x28x1 with labels drawn
  uniformly from 10 classes: a pure memorisation task.
* ``sum``: 28x28x1 inputs; per example a mean ``mu ~ U(-1, 1)`` is drawn and each pixel
  is ``mu + z`` with ``z ~ N(0, 1)`` truncated to ``[-2, 2]``; the label is 1 if the
  pixel sum is positive, else 0 (so almost always the sign of ``mu``, balanced).
  Pixels are divided by their analytic std ``sqrt(1/3 + Var z)`` to be standardised.

Both are deterministic given ``(seed, split)``; 'train' and 'test' use different streams.
"""

from __future__ import annotations

import functools
import math
import zlib

import numpy as np

from vsml_jax.data.arrays import DatasetArrays

SHAPE = (28, 28, 1)
DEFAULT_SEED = 0
DEFAULT_SIZES = {"random": 20, "sum": 10_000}
_SPLITS = ("train", "test")
_TRUNC = 2.0


def _rng(name: str, split: str, seed: int) -> np.random.Generator:
    if split not in _SPLITS:
        raise ValueError(f"Unknown split '{split}' of '{name}'; available splits: train, test")
    return np.random.default_rng([seed, _SPLITS.index(split), zlib.crc32(name.encode())])


def _truncated_normal_var(bound: float) -> float:
    """Variance of ``N(0, 1)`` truncated to ``[-bound, bound]``."""
    pdf = math.exp(-0.5 * bound**2) / math.sqrt(2 * math.pi)
    mass = math.erf(bound / math.sqrt(2))
    return 1.0 - 2 * bound * pdf / mass


def _truncated_normal(rng: np.random.Generator, shape, bound: float) -> np.ndarray:
    """``N(0, 1)`` samples truncated to ``[-bound, bound]``, by rejection."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > bound
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > bound
    return out


def random_task(split: str, num_examples: int | None = None, seed: int = DEFAULT_SEED):
    """``random``: Gaussian images with uniformly random labels out of 10."""
    n = DEFAULT_SIZES["random"] if num_examples is None else num_examples
    rng = _rng("random", split, seed)
    images = rng.standard_normal((n, *SHAPE)).astype(np.float32)
    labels = rng.integers(0, 10, n).astype(np.int32)
    return DatasetArrays("random", "synthetic:random", split, images, labels, 10, 0.0, 1.0)


def sum_task(split: str, num_examples: int | None = None, seed: int = DEFAULT_SEED):
    """``sum``: label = sign of the pixel sum, pixels around a per-example mean."""
    n = DEFAULT_SIZES["sum"] if num_examples is None else num_examples
    rng = _rng("sum", split, seed)
    mu = rng.uniform(-1.0, 1.0, (n, 1, 1, 1))
    x = mu + _truncated_normal(rng, (n, *SHAPE), _TRUNC)
    labels = (x.sum(axis=(1, 2, 3)) > 0).astype(np.int32)
    images = (x / math.sqrt(1 / 3 + _truncated_normal_var(_TRUNC))).astype(np.float32)
    return DatasetArrays("sum", "synthetic:sum", split, images, labels, 2, 0.0, 1.0)


def load_synthetic(name: str, split: str, num_examples: int | None = None, seed: int | None = None):
    """Build synthetic dataset ``name`` ('random' or 'sum'); its arrays are read-only."""
    builders = {"random": random_task, "sum": sum_task}
    if name not in builders:
        raise ValueError(f"Unknown synthetic dataset '{name}'; known: {', '.join(builders)}")
    if num_examples is not None and num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    return _build(builders[name], split, num_examples, DEFAULT_SEED if seed is None else seed)


@functools.lru_cache(maxsize=8)
def _build(builder, split: str, num_examples: int | None, seed: int) -> DatasetArrays:
    """One build per process: 'sum' draws 8 million truncated normals (half a second),
    and a run, its meta-test and its resume each ask for it."""
    ds = builder(split, num_examples, seed)
    ds.images.setflags(write=False)
    ds.labels.setflags(write=False)
    return ds
