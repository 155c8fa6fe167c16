"""``DatasetArrays``: one split of one dataset, held in host memory as numpy arrays."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetArrays:
    """Images and labels of one dataset split, plus how to standardise them.

    Attributes:
        name: logical dataset name (``'mnist'``, ``'sum'``, ...).
        source: what the data was actually read from, e.g. ``'kmnist_testonly:3.0.1'``
            or ``'synthetic:sum'``.
        split: the split asked for (``'train'``, ``'test'``, ...).
        images: ``[N, H, W, C]``; ``uint8`` raw pixels, or ``float32`` values that are
            already standardised (synthetic data: mean 0, std 1).
        labels: ``int32 [N]``, each in ``[0, num_classes)``.
        num_classes: number of classes of the dataset (labels need not cover all).
        mean, std: standardisation statistics in ``[0, 1]`` pixel units, i.e. a model
            sees ``(images / 255 - mean) / std``. For float images they are 0 and 1.
    """

    name: str
    source: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    mean: float
    std: float

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must be [N, H, W, C], got shape {self.images.shape}")
        if self.images.dtype not in (np.uint8, np.float32):
            raise ValueError(f"images must be uint8 or float32, got {self.images.dtype}")
        if self.labels.dtype != np.int32 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be int32 [{self.images.shape[0]}], "
                f"got {self.labels.dtype} {self.labels.shape}"
            )
        if self.images.dtype == np.float32 and not np.isfinite(self.images).all():
            bad = ~np.isfinite(self.images.reshape(len(self.images), -1)).all(1)
            raise ValueError(
                f"images of {self.name}/{self.split} hold non-finite values (NaN or infinity) "
                f"in {int(bad.sum())} examples, the first at index {int(np.argmax(bad))}; "
                "drop or impute them"
            )
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.labels.size and not 0 <= self.labels.min() <= self.labels.max() < self.num_classes:
            raise ValueError(f"labels of {self.name} outside [0, {self.num_classes})")
        if not self.std > 0:
            raise ValueError(f"std must be > 0, got {self.std}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        return tuple(int(s) for s in self.images.shape[1:])

    @property
    def is_float(self) -> bool:
        """Whether the images are float32 and so already standardised."""
        return self.images.dtype == np.float32

    def replace(self, **changes) -> DatasetArrays:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
