"""Building datasets with TFDS (needs TensorFlow: ``pip install -e '.[tf]'``).

``prepare(name)`` builds the canonical (first) TFDS candidate of ``name`` in array_record
format, so that ``load_split`` can read it with ``tfds.data_source``. Without internet,
pass the raw files with ``manual_dir`` (e.g. ``../shared/datasets/raw/mnist``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from vsml_jax.data import registry
from vsml_jax.data.dirs import default_prepare_dir, resolve_data_dirs
from vsml_jax.data.sources import locate

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


class TensorFlowMissingError(ImportError):
    """Preparing needs TensorFlow, which is an optional extra."""


def require_tensorflow() -> None:
    """Raise ``TensorFlowMissingError`` with the install command if TF is missing."""
    if importlib.util.find_spec("tensorflow") is None:
        raise TensorFlowMissingError(
            "Preparing datasets needs TensorFlow, which is not installed: "
            "install the extra with `pip install -e '.[tf]'` "
            "(reading prepared data needs no TensorFlow)"
        )


def prepare(
    name: str, data_dir: PathLike | None = None, manual_dir: PathLike | None = None
) -> Path:
    """Build ``name``'s canonical TFDS dataset; returns the data dir written to.

    Raises:
        ValueError: unknown or synthetic name, or a data dir inside ``../shared``.
        TensorFlowMissingError: TensorFlow is not installed.
    """
    candidate = registry.candidates(name)[0]
    out = default_prepare_dir(data_dir)
    require_tensorflow()
    import tensorflow_datasets as tfds

    download_config = tfds.download.DownloadConfig(
        manual_dir=os.fspath(Path(manual_dir).expanduser()) if manual_dir else None
    )
    log.info("Preparing %s in %s", candidate.tfds_name, out)
    builder = tfds.builder(candidate.tfds_name, data_dir=os.fspath(out), file_format="array_record")
    builder.download_and_prepare(download_config=download_config)
    return out


def status(data_dir: PathLike | None = None) -> list[tuple[str, str]]:
    """``(name, where)`` for every logical name: source and dir, 'missing' or 'synthetic'."""
    dirs = resolve_data_dirs(data_dir)
    rows = []
    for name in registry.LOGICAL_NAMES:
        if name in registry.SYNTHETIC_NAMES:
            rows.append((name, "synthetic (generated on the fly)"))
            continue
        loc = locate(name, data_dir)
        rows.append((name, f"{loc.candidate.tfds_name} in {loc.data_dir}" if loc else "missing"))
    if any(where == "missing" for _, where in rows):
        rows.append(("(searched)", ", ".join(map(str, dirs))))
    return rows
