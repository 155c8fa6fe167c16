"""Reading real datasets: find a prepared TFDS copy, decode it once, cache it as ``.npz``.

``load_split(name, split)`` resolves the logical ``name`` to the first of its pinned TFDS
candidates (``registry.TFDS_CANDIDATES``) present in the data dirs (``dirs.py``), checks
the split, and returns uint8 arrays from the cache, decoding with ``tfds.data_source``
on a miss. If nothing is found on disk, TFDS is asked directly as a last resort (this is
what makes ``tfds.testing.mock_data`` work); such data is not cached.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np

from vsml_jax.data import cache, registry, synthetic, tfds_reader
from vsml_jax.data.arrays import DatasetArrays
from vsml_jax.data.dirs import cache_dir as resolve_cache_dir
from vsml_jax.data.dirs import resolve_data_dirs
from vsml_jax.data.preprocess import standardisation_stats

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


class DatasetNotFoundError(FileNotFoundError):
    """No prepared copy of a dataset was found; the message says how to prepare one."""


class DatasetCorruptError(ValueError):
    """A prepared dataset's files exist but cannot be read."""


@dataclasses.dataclass(frozen=True)
class SourceLocation:
    """A prepared TFDS dataset on disk that serves a logical name."""

    name: str
    candidate: registry.TfdsCandidate
    data_dir: Path

    @property
    def folder(self) -> Path:
        return self.data_dir / self.candidate.relative_dir

    def tfds_splits(self) -> tuple[str, ...]:
        """The splits listed in the prepared dataset's ``dataset_info.json``."""
        info = json.loads((self.folder / "dataset_info.json").read_text())
        return tuple(s["name"] for s in info.get("splits", []))


def _is_prepared(folder: Path) -> bool:
    """Prepared for random access: metadata plus array_record shards."""
    return (folder / "dataset_info.json").is_file() and any(folder.glob("*.array_record*"))


def _not_found(name: str, dirs: list[Path], explicit: bool = False) -> DatasetNotFoundError:
    tried = " or ".join(c.tfds_name for c in registry.candidates(name))
    other_format = [
        str(d / c.relative_dir)
        for c in registry.candidates(name)
        for d in dirs
        if (d / c.relative_dir / "dataset_info.json").is_file()
        and not _is_prepared(d / c.relative_dir)
    ]
    note = f" ({', '.join(other_format)} lack array_record files)" if other_format else ""
    if explicit:
        note += " (the --data-dir given: no other dir is searched)"
    return DatasetNotFoundError(
        f"Dataset '{name}' not found: tried TFDS {tried} (array_record format) in "
        f"{', '.join(map(str, dirs))}{note}. Prepare it with: "
        f"python -m vsml_jax.data prepare {name} [--manual-dir DIR], "
        f"or point --data-dir / $VSML_DATA_DIR at a prepared copy."
    )


def locate(name: str, data_dir: PathLike | None = None) -> SourceLocation | None:
    """The first candidate of ``name`` prepared in a data dir (candidates outer), or None."""
    return _locate_in(name, resolve_data_dirs(data_dir))


def available_splits(name: str, data_dir: PathLike | None = None) -> tuple[str, ...]:
    """The splits ``load_split(name, ...)`` can serve here, without reading any data.

    Raises:
        DatasetNotFoundError: no prepared copy of a real dataset was found.
    """
    registry.check_name(name)
    if name in registry.SYNTHETIC_NAMES:
        return ("train", "test")
    dirs = resolve_data_dirs(data_dir)
    loc = _locate_in(name, dirs)
    if loc is None:
        raise _not_found(name, dirs, explicit=data_dir is not None)
    return loc.candidate.user_splits(loc.tfds_splits())


def _locate_in(name: str, dirs: list[Path]) -> SourceLocation | None:
    for candidate in registry.candidates(name):
        for d in dirs:
            if _is_prepared(d / candidate.relative_dir):
                return SourceLocation(name, candidate, d)
    return None


def _read_located(loc: SourceLocation, split: str, cache_root: Path):
    """Arrays of a located split, via the cache."""
    available = loc.candidate.user_splits(loc.tfds_splits())
    if split not in available:
        raise ValueError(
            f"Unknown split '{split}' of '{loc.name}' in {loc.candidate.tfds_name} "
            f"(at {loc.folder}); available splits: {', '.join(available)}"
        )
    tfds_split = loc.candidate.tfds_split(split)
    path = cache.cache_path(cache_root, loc.candidate.tfds_name, tfds_split)
    if (hit := cache.read(path)) is not None:
        log.debug("Read %s/%s from cache %s", loc.candidate.tfds_name, tfds_split, path)
        return hit
    try:
        src = tfds_reader.open_source(loc.candidate.tfds_name, tfds_split, loc.data_dir)
        images, labels, num_classes = tfds_reader.decode_all(src)
    except Exception as e:  # noqa: BLE001 - array_record / TFDS raise many types
        files = sorted(loc.folder.glob(f"*-{tfds_split}.array_record*")) or [loc.folder]
        raise DatasetCorruptError(
            f"Dataset '{loc.name}' split {split}: cannot read {', '.join(map(str, files))} "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); the "
            f"file is corrupt or truncated. Prepare it again with: python -m vsml_jax.data "
            f"prepare {loc.name} --data-dir DIR, or point --data-dir at a good copy."
        ) from None
    try:
        cache.write(path, images, labels, num_classes)
    except OSError as e:
        log.warning("Could not cache %s: %s", path, e)
    return images, labels, num_classes


def _read_via_tfds(name: str, split: str, dirs: list[Path], explicit: bool = False):
    """Last resort: let TFDS resolve each candidate itself (e.g. under mock_data)."""
    absl = logging.getLogger("absl")
    level = absl.level
    for candidate in registry.candidates(name):
        absl.setLevel(logging.ERROR)  # "Variant folder ... has no dataset_info.json": ours says it
        try:
            src = tfds_reader.open_source(candidate.tfds_name, candidate.tfds_split(split), dirs[0])
        except Exception as e:  # noqa: BLE001 - TFDS raises many types for "not there"
            log.debug("TFDS could not open %s: %s", candidate.tfds_name, e)
            continue
        finally:
            absl.setLevel(level)
        return candidate, tfds_reader.decode_all(src)
    raise _not_found(name, dirs, explicit)


def load_split(
    name: str,
    split: str,
    data_dir: PathLike | None = None,
    cache_dir: PathLike | None = None,
    *,
    num_examples: int | None = None,
    seed: int | None = None,
) -> DatasetArrays:
    """Load one split of a dataset as host arrays.

    Args:
        name: a logical name, one of ``LOGICAL_NAMES``.
        split: e.g. 'train' or 'test' (omniglot_small maps them to small1 / small2).
        data_dir: searched first (see ``resolve_data_dirs``).
        cache_dir: overrides ``$VSML_CACHE_DIR`` / ``<repo>/.cache/vsml_jax``.
        num_examples, seed: synthetic datasets only ('random', 'sum').

    Raises:
        ValueError: unknown name or split, or synthetic-only options for real data.
        DatasetNotFoundError: no prepared copy found.
    """
    registry.check_name(name)
    if name in registry.SYNTHETIC_NAMES:
        return synthetic.load_synthetic(name, split, num_examples, seed)
    if num_examples is not None or seed is not None:
        raise ValueError("num_examples and seed apply to synthetic datasets only")
    dirs = resolve_data_dirs(data_dir)
    loc = _locate_in(name, dirs)
    if loc is not None:
        candidate = loc.candidate
        images, labels, num_classes = _read_located(loc, split, resolve_cache_dir(cache_dir))
        where = str(loc.data_dir)
    else:
        candidate, (images, labels, num_classes) = _read_via_tfds(
            name, split, dirs, explicit=data_dir is not None
        )
        where = "TFDS itself (not cached)"
    log.info(
        "Dataset %s/%s: %s split %s from %s",
        name,
        split,
        candidate.tfds_name,
        candidate.tfds_split(split),
        where,
    )
    if candidate.transpose:
        images = np.ascontiguousarray(np.swapaxes(images, 1, 2))
    mean, std = standardisation_stats(name, images.shape[-1])
    return DatasetArrays(
        name=name,
        source=candidate.tfds_name,
        split=split,
        images=images,
        labels=labels.astype(np.int32, copy=False),
        num_classes=num_classes,
        mean=mean,
        std=std,
    )
