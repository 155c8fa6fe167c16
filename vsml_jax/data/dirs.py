"""Where datasets are read from, and where decoded copies are cached.

Data dirs are searched in this order (see ``resolve_data_dirs``):

1. the explicit ``data_dir`` argument (the CLI's ``--data-dir``, recorded in a run's
   config): when given, it is the only dir searched, so a dataset missing there is an
   error naming that dir, never data read from somewhere else;
2. ``$VSML_DATA_DIR``;
3. ``../shared/datasets/tfds`` next to the repository root, then next to the current
   working directory, each only if it exists (read-only: nothing is written there);
4. TFDS's default data dir (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).

The cache lives in ``$VSML_CACHE_DIR`` or ``<repo root>/.cache/vsml_jax``.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "VSML_DATA_DIR"
CACHE_DIR_ENV = "VSML_CACHE_DIR"
_SHARED_TFDS = Path("..") / "shared" / "datasets" / "tfds"


def repo_root() -> Path:
    """The repository root: two levels above this package."""
    return Path(__file__).resolve().parents[2]


def shared_tfds_dirs() -> list[Path]:
    """Existing ``../shared/datasets/tfds`` dirs near the repo root and the cwd."""
    found = []
    for base in (repo_root(), Path.cwd()):
        path = (base / _SHARED_TFDS).resolve()
        if path.is_dir() and path not in found:
            found.append(path)
    return found


def tfds_default_data_dir() -> Path:
    """TFDS's default data dir: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``."""
    env = os.environ.get("TFDS_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / "tensorflow_datasets"


def resolve_data_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The data dirs to search, in order, without duplicates: just ``data_dir`` when it
    is given, else ``$VSML_DATA_DIR``, the shared dirs and TFDS's default.

    Raises:
        FileNotFoundError: ``data_dir`` or ``$VSML_DATA_DIR`` is given (set) but empty or
            not a directory; neither silently falls back to the next dir.
    """
    dirs: list[Path] = []
    for value, origin in (
        (data_dir, "--data-dir"),
        (os.environ.get(DATA_DIR_ENV), f"${DATA_DIR_ENV}"),
    ):
        if value is None:
            continue
        if not str(value).strip():
            raise FileNotFoundError(
                f"the data dir from {origin} is empty; pass a directory or leave it unset"
            )
        path = Path(value).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"Data dir {path} (from {origin}) does not exist or is not a directory"
            )
        dirs.append(path.resolve())
        if origin == "--data-dir":
            return dirs
    dirs.extend(shared_tfds_dirs())
    dirs.append(tfds_default_data_dir().resolve())
    return list(dict.fromkeys(dirs))


def default_prepare_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Where ``prepare`` writes: ``data_dir``, else ``$VSML_DATA_DIR``, else TFDS's default.

    Raises:
        ValueError: the dir is inside a read-only ``../shared`` folder.
    """
    if data_dir is not None:
        out = Path(data_dir)
    elif env := os.environ.get(DATA_DIR_ENV):
        out = Path(env)
    else:
        out = tfds_default_data_dir()
    out = out.expanduser().resolve()
    for base in (repo_root(), Path.cwd()):
        shared = (base / ".." / "shared").resolve()
        if out == shared or shared in out.parents:
            raise ValueError(f"Refusing to write into the read-only shared folder {shared}")
    return out


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The cache dir: ``explicit``, else ``$VSML_CACHE_DIR``, else ``<repo>/.cache/vsml_jax``."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if env := os.environ.get(CACHE_DIR_ENV):
        return Path(env).expanduser()
    return repo_root() / ".cache" / "vsml_jax"
