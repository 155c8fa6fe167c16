"""Files that a killed run never leaves torn: each is written to a temporary file beside
it and renamed into place (``os.replace`` is atomic on POSIX)."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np


def _replace_into(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # as open() would create it (mkstemp makes it 0600)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    _replace_into(Path(path), lambda f: f.write(text.encode()))


def save_npz(path: str | Path, **arrays) -> None:
    """``np.savez_compressed(path, **arrays)``, atomically."""
    _replace_into(Path(path), lambda f: np.savez_compressed(f, **arrays))


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file; a corrupt file raises ValueError naming it."""
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(
            f"cached arrays {path} are corrupt ({type(e).__name__}: {e}); delete that file "
            "and resume to recompute them"
        ) from None
