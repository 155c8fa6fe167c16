"""``DeviceDataset``: several datasets flattened, concatenated and put on the device once."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from flax import struct

from vsml_jax.data import preprocess
from vsml_jax.data.arrays import DatasetArrays


@struct.dataclass
class DeviceDataset:
    """K datasets in one pytree; member ``k`` is rows ``offsets[k] : offsets[k] + sizes[k]``.

    Pixel ``x`` of member ``k`` is standardised as ``(x * scale[k] - mean[k]) / std[k]``.

    Attributes:
        images: ``[N, D]`` flattened images; uint8, or float32 if any member is float
            (uint8 members then hold raw 0..255 values, still scaled by ``scale``).
        labels: ``int32 [N]``, each member's own labels.
        offsets, sizes: ``int32 [K]``.
        member_classes: ``int32 [K]``, each member's ``num_classes``.
        mean, std, scale: ``float32 [K]``; scale is 1/255 for uint8 members, 1 for float.
        num_classes: static, the max over members.
        input_shape: static ``(H, W, C)`` shared by all members.
        names: static logical names of the members.
    """

    images: jnp.ndarray
    labels: jnp.ndarray
    offsets: jnp.ndarray
    sizes: jnp.ndarray
    member_classes: jnp.ndarray
    mean: jnp.ndarray
    std: jnp.ndarray
    scale: jnp.ndarray
    num_classes: int = struct.field(pytree_node=False)
    input_shape: tuple[int, int, int] = struct.field(pytree_node=False)
    names: tuple[str, ...] = struct.field(pytree_node=False)

    @property
    def num_datasets(self) -> int:
        return len(self.names)

    @property
    def input_dim(self) -> int:
        """``D = H * W * C``."""
        return int(np.prod(self.input_shape))


def _harmonise(ds: DatasetArrays, image_size, grey: bool) -> DatasetArrays:
    if grey:
        ds = preprocess.to_grey(ds)
    if image_size is not None:
        ds = preprocess.resize(ds, image_size)
    return ds


def to_device(
    datasets: Sequence[DatasetArrays],
    image_size: tuple[int, int] | None = None,
    grey: bool = False,
) -> DeviceDataset:
    """Grey-scale / resize the members to one shape, flatten, concatenate, copy to device.

    Raises:
        ValueError: no datasets, or members of different shapes and no ``image_size``
            (or different channel counts and ``grey=False``).
    """
    if not datasets:
        raise ValueError("to_device needs at least one dataset")
    members = [_harmonise(ds, image_size, grey) for ds in datasets]
    shapes = {ds.image_shape for ds in members}
    if len(shapes) != 1:
        found = ", ".join(f"{ds.name}: {ds.image_shape}" for ds in members)
        raise ValueError(
            f"Datasets have different image shapes ({found}); pass image_size=(H, W) "
            "and/or grey=True to bring them to one shape"
        )
    any_float = any(ds.is_float for ds in members)
    dtype = np.float32 if any_float else np.uint8
    images = np.concatenate([ds.images.reshape(len(ds), -1).astype(dtype) for ds in members])
    sizes = np.array([len(ds) for ds in members], np.int32)
    if (sizes == 0).any():
        raise ValueError("every dataset needs at least one example")
    f32 = lambda values: jnp.asarray(np.array(values, np.float32))
    return DeviceDataset(
        images=jnp.asarray(images),
        labels=jnp.asarray(np.concatenate([ds.labels for ds in members])),
        offsets=jnp.asarray(np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)),
        sizes=jnp.asarray(sizes),
        member_classes=jnp.asarray(np.array([ds.num_classes for ds in members], np.int32)),
        mean=f32([ds.mean for ds in members]),
        std=f32([ds.std for ds in members]),
        scale=f32([1.0 if ds.is_float else 1 / 255 for ds in members]),
        num_classes=max(ds.num_classes for ds in members),
        input_shape=shapes.pop(),
        names=tuple(ds.name for ds in members),
    )
