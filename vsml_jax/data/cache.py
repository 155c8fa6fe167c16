"""The on-disk cache of decoded splits: one uncompressed ``.npz`` per (source, split)."""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_FORMAT = 1  # bump when the stored layout changes


def cache_path(root: Path, tfds_name: str, tfds_split: str) -> Path:
    """``root/<name>[-<config>]-<version>/<split>.npz``."""
    folder = tfds_name.replace("/", "-").replace(":", "-")
    return root / folder / f"{tfds_split}.npz"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write(path: Path, images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    """Write atomically: to a temp file in the same dir, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                images=images,
                labels=labels,
                num_classes=np.int64(num_classes),
                format=np.int64(_FORMAT),
            )
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; cache files are not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("Cached %d examples at %s", len(labels), path)


def read(path: Path) -> tuple[np.ndarray, np.ndarray, int] | None:
    """``(images, labels, num_classes)``, or None if absent, unreadable or outdated."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            if int(z["format"]) != _FORMAT:
                return None
            return z["images"], z["labels"], int(z["num_classes"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        log.warning("Ignoring unreadable cache file %s: %s", path, e)
        return None
