"""Host-side (numpy) preprocessing, done once per run before data goes to the device.

Every function takes and returns a ``DatasetArrays``; uint8 images stay uint8. Functions
that change the pixel distribution (grey-scaling, resizing) also update ``mean``/``std``
from ``STATS`` where it has an entry for the new format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL import Image

from vsml_jax.data.arrays import DatasetArrays

Size = tuple[int, int]

# Standardisation statistics in [0, 1] pixel units, keyed by (name, channels, size);
# size None is the dataset's native size and the fallback for sizes not listed.
# mnist, fashion_mnist, kmnist and emnist: the paper's table (mnist and fashion_mnist
# reproduce on their train splits to 4 decimals).
# cifar10 and omniglot were computed from the train split here, with
#   python -c "from vsml_jax.data import load_split; from vsml_jax.data.preprocess import *;
#   d = load_split('cifar10', 'train'); g = to_grey(d);
#   print(compute_stats(d), compute_stats(g), compute_stats(resize(g, (28, 28))))"
# (and the same with 'omniglot'). cifar10 came from cifar10_jpeg75:1.0.0 (JPEG q75; the
# lossless 4000-image subset agrees to 0.002); omniglot from omniglot_small's small1 (its
# three channels are equal, so grey and RGB agree; strokes are dark on white).
STATS: dict[tuple[str, int, Size | None], tuple[float, float]] = {
    ("mnist", 1, None): (0.1307, 0.3081),
    ("fashion_mnist", 1, None): (0.2860, 0.3530),
    ("kmnist", 1, None): (0.1918, 0.3483),
    ("emnist", 1, None): (0.1751, 0.3332),
    ("cifar10", 3, None): (0.4733, 0.2504),
    ("cifar10", 1, None): (0.4808, 0.2389),
    ("cifar10", 1, (28, 28)): (0.4810, 0.2314),
    ("omniglot", 3, None): (0.9237, 0.2654),
    ("omniglot", 1, None): (0.9237, 0.2654),
    ("omniglot", 3, (28, 28)): (0.9238, 0.2133),
    ("omniglot", 1, (28, 28)): (0.9238, 0.2133),
}

_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601


def lookup_stats(name: str, channels: int, size: Size | None = None):
    """``(mean, std)`` for ``name`` in this format, or None if ``STATS`` has none."""
    key = (name, channels, tuple(size) if size is not None else None)
    return STATS.get(key, STATS.get((name, channels, None)))


def standardisation_stats(name: str, channels: int, size: Size | None = None):
    """``(mean, std)`` from ``STATS``; ValueError if there is no entry."""
    stats = lookup_stats(name, channels, size)
    if stats is None:
        raise ValueError(f"No standardisation stats for '{name}' with {channels} channel(s)")
    return stats


def compute_stats(ds: DatasetArrays, chunk: int = 4096) -> tuple[float, float]:
    """Mean and std of all pixels, in [0, 1] units for uint8 images (float64 sums)."""
    total, total_sq, count = 0.0, 0.0, 0
    for start in range(0, len(ds), chunk):
        x = ds.images[start : start + chunk].astype(np.float64)
        if not ds.is_float:
            x /= 255.0
        total += x.sum()
        total_sq += np.square(x).sum()
        count += x.size
    mean = total / count
    return round(float(mean), 4), round(float(np.sqrt(total_sq / count - mean**2)), 4)


def _restat(ds: DatasetArrays, images: np.ndarray) -> DatasetArrays:
    """``ds`` with new images, and stats looked up for their format when known."""
    stats = None if ds.is_float else lookup_stats(ds.name, images.shape[-1], images.shape[1:3])
    mean, std = stats if stats is not None else (ds.mean, ds.std)
    return ds.replace(images=images, mean=mean, std=std)


def to_grey(ds: DatasetArrays) -> DatasetArrays:
    """RGB -> one channel with ITU-R 601 luma (rounded for uint8); grey passes through."""
    channels = ds.image_shape[-1]
    if channels == 1:
        return ds
    if channels != 3:
        raise ValueError(f"to_grey needs 1 or 3 channels, got {channels}")
    grey = ds.images.astype(np.float64) @ _LUMA
    if ds.is_float:
        grey = grey.astype(np.float32)
    else:
        grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return _restat(ds, grey[..., None])


# Pillow's fixed point for 8-bit images (PRECISION_BITS in libImaging/Resample.c)
_PIL_BITS = 22
_RESIZE_CHUNK = 4096  # images per block of the uint8 resize (bounds its float64 copy)


def _pil_bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's antialiased bilinear weights as an ``[out_size, in_size]`` matrix in its
    fixed point (``precompute_coeffs`` and ``normalize_coeffs_8bpc``, operation for
    operation, so that the integers are Pillow's)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = filterscale  # the bilinear filter's support is 1
    weights = np.zeros((out_size, in_size))
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        w = np.maximum(1.0 - np.abs((np.arange(lo, hi) - center + 0.5) * (1.0 / filterscale)), 0)
        total = 0.0
        for v in w:  # in order, as Pillow sums
            total += v
        weights[xx, lo:hi] = w / total if total != 0.0 else w
    return np.floor(weights * (1 << _PIL_BITS) + 0.5)  # Pillow's rounding of weights >= 0


def _pil_pass(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One of Pillow's two passes over the last axis of ``x`` (float64 holding uint8
    values), rounded and clipped to uint8 values as Pillow does between and after its
    passes. Exact: every product and sum is an integer below 2**53."""
    acc = x @ weights.T + (1 << (_PIL_BITS - 1))
    return np.clip(np.floor(acc / (1 << _PIL_BITS)), 0, 255)


def _resize_uint8(images: np.ndarray, size: Size) -> np.ndarray:
    """``[N, H, W, C]`` uint8 images scaled by the same factor along both axes, resized as
    Pillow's ``resize(..., BILINEAR)`` resizes each image (bit for bit), as two matrix
    products per block of images. Pillow runs its horizontal pass first at equal scales
    (since Pillow 13 a much larger vertical reduction runs the vertical pass first, so
    other shapes go through Pillow itself)."""
    n, in_h, in_w, c = images.shape
    h, w = size
    horizontal = _pil_bilinear_weights(in_w, w) if in_w != w else None
    vertical = _pil_bilinear_weights(in_h, h) if in_h != h else None
    out = np.empty((n, h, w, c), np.uint8)
    for i in range(0, n, _RESIZE_CHUNK):
        x = images[i : i + _RESIZE_CHUNK].astype(np.float64).transpose(0, 3, 1, 2)
        if horizontal is not None:
            x = _pil_pass(x, horizontal)
        if vertical is not None:
            x = _pil_pass(x.swapaxes(2, 3), vertical).swapaxes(2, 3)
        out[i : i + _RESIZE_CHUNK] = x.transpose(0, 2, 3, 1)
    return out


def _resize_one(image: np.ndarray, size: Size) -> np.ndarray:
    """Resize one ``[H, W, C]`` image with Pillow's antialiased bilinear filter."""
    h, w = size
    if image.dtype == np.uint8:
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        out = np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR))
        return out.reshape(h, w, image.shape[-1])
    channels = [
        np.asarray(Image.fromarray(image[..., c]).resize((w, h), Image.Resampling.BILINEAR))
        for c in range(image.shape[-1])
    ]
    return np.stack(channels, axis=-1).astype(np.float32)


def resize(ds: DatasetArrays, size: Size) -> DatasetArrays:
    """Resize every image to ``size`` = (H, W) with Pillow's antialiased bilinear filter;
    dtype is kept (uint8 stays uint8)."""
    size = (int(size[0]), int(size[1]))
    if min(size) < 1:
        raise ValueError(f"size must be positive, got {size}")
    in_h, in_w = ds.image_shape[:2]
    if (in_h, in_w) == size:
        return ds
    if ds.image_shape[-1] not in (1, 3) and not ds.is_float:
        raise ValueError(f"resize of uint8 images needs 1 or 3 channels, got {ds.image_shape}")
    if not ds.is_float and in_h * size[1] == in_w * size[0]:
        return _restat(ds, _resize_uint8(ds.images, size))
    images = np.zeros((len(ds), *size, ds.image_shape[-1]), ds.images.dtype)
    for i, image in enumerate(ds.images):
        images[i] = _resize_one(image, size)
    return _restat(ds, images)


def pad(ds: DatasetArrays, size: Size, fill: Literal["zero", "mean"] = "zero") -> DatasetArrays:
    """Centre the images in a larger ``size`` = (H, W) canvas.

    ``fill='zero'`` pads with raw value 0: black for uint8 images (the background of the
    MNIST family), which is the mean for float (already standardised) images.
    ``fill='mean'`` pads uint8 images with ``round(mean * 255)``, i.e. with about 0 after
    standardisation. Stats are not updated (the padding shifts them a little).
    """
    h, w = ds.image_shape[:2]
    out_h, out_w = int(size[0]), int(size[1])
    if out_h < h or out_w < w:
        raise ValueError(f"cannot pad {h}x{w} images to the smaller {out_h}x{out_w}")
    if fill not in ("zero", "mean"):
        raise ValueError(f"fill must be 'zero' or 'mean', got {fill!r}")
    value = 0 if fill == "zero" or ds.is_float else int(round(ds.mean * 255))
    top, left = (out_h - h) // 2, (out_w - w) // 2
    widths = ((0, 0), (top, out_h - h - top), (left, out_w - w - left), (0, 0))
    return ds.replace(images=np.pad(ds.images, widths, constant_values=value))


def filter_classes(
    ds: DatasetArrays,
    classes: Sequence[int] | None = None,
    *,
    max_classes: int | None = None,
) -> DatasetArrays:
    """Keep some classes and relabel them ``0..k-1``.

    Args:
        classes: the labels to keep; ``classes[i]`` becomes label ``i``.
        max_classes: instead, keep the ``max_classes`` smallest labels present (e.g. the
            first classes of Omniglot's 964); new labels follow the old order.
    """
    if (classes is None) == (max_classes is None):
        raise ValueError("give exactly one of classes and max_classes")
    present = np.unique(ds.labels)
    if classes is None:
        if max_classes < 1:
            raise ValueError(f"max_classes must be >= 1, got {max_classes}")
        classes = present[:max_classes]
    classes = np.asarray(classes, dtype=np.int64)
    if classes.ndim != 1 or classes.size == 0 or len(np.unique(classes)) != classes.size:
        raise ValueError(f"classes must be a non-empty list without repeats, got {classes}")
    missing = np.setdiff1d(classes, present)
    if missing.size:
        raise ValueError(f"classes {missing.tolist()} have no examples in {ds.name}/{ds.split}")
    relabel = np.full(int(max(ds.num_classes, classes.max() + 1)), -1, np.int32)
    relabel[classes] = np.arange(classes.size, dtype=np.int32)
    new = relabel[ds.labels]
    keep = new >= 0
    return ds.replace(images=ds.images[keep], labels=new[keep], num_classes=int(classes.size))
