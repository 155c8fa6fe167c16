"""Datasets for meta-training and meta-testing learned learning algorithms.

Host side: ``load_split`` reads a real (TFDS) or synthetic dataset into
``DatasetArrays``; ``preprocess`` grey-scales, resizes, pads and filters classes.
Device side: ``to_device`` builds a ``DeviceDataset`` (possibly a mixture of several
datasets) and ``sample_episode(s)`` draws tasks from it inside jitted code.
"""

from vsml_jax.data.arrays import DatasetArrays
from vsml_jax.data.device import DeviceDataset, to_device
from vsml_jax.data.dirs import resolve_data_dirs
from vsml_jax.data.episodes import (
    Episode,
    EpisodeSpec,
    sample_episode,
    sample_episode_full,
    sample_episodes,
    sample_episodes_at,
    standardise,
)
from vsml_jax.data.registry import LOGICAL_NAMES
from vsml_jax.data.sources import DatasetNotFoundError, available_splits, load_split, locate

__all__ = [
    "LOGICAL_NAMES",
    "DatasetArrays",
    "DatasetNotFoundError",
    "DeviceDataset",
    "available_splits",
    "Episode",
    "EpisodeSpec",
    "load_split",
    "locate",
    "resolve_data_dirs",
    "sample_episode",
    "sample_episode_full",
    "sample_episodes",
    "sample_episodes_at",
    "standardise",
    "to_device",
]
