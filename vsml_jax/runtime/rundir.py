"""Run directories that cannot be corrupted: exclusive creation, one writer, resume checks.

* :func:`new_run_dir` names and creates a fresh run dir that every process of a
  multi-process run agrees on (process 0's clock and its choice of suffix); only process 0
  creates it.
* :func:`create_run_dir` makes ``<root>/<stamp>-seed<seed>`` with ``os.mkdir`` (never
  ``exist_ok``); when two runs start in the same second the later one gets ``-2``, ``-3``...
* :class:`RunLock` holds an exclusive ``fcntl`` lock on ``<run>/.lock`` for the whole run,
  so a second writer (a second ``--resume`` of the same dir) stops with one line naming
  the process that holds it.
* :func:`open_run` is the one way a run opens its dir: fresh or resumed, locked, and
  removed again when a fresh start fails before any work.
* :func:`check_resume_config` compares a resumed run's config with the one it was started
  with: only the keys in :data:`RESUME_SAFE` may change.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import re
import shutil
import socket
import time
from pathlib import Path

import yaml

from vsml_jax.config import ConfigError, RunConfig, to_dict
from vsml_jax.runtime.files import write_text

LOCK_NAME = ".lock"

# keys that may change on --resume: they do not alter the meta-parameters' trajectory up
# to the checkpoint (how long to train, where to write, what to log and meta-test).
# cpu_devices is not one: the population's split over devices sets the order of the
# floating-point sums across them, and another split ended a resumed run 1.5e-3 away
# from the uninterrupted one (docs/RELIABILITY.md)
RESUME_SAFE = (
    "name",
    "out_dir",
    "es.generations",
    "grad.steps",
    "checkpoint_every",
    "keep_checkpoints",
    "tensorboard",
    "distributed",
    "distributed_heartbeat_timeout_s",
    "distributed_init_timeout_s",
    "data.data_dir",
    "eval",  # every eval.* key
)


class RunDirError(RuntimeError):
    """A run dir cannot be created, or is in use by another process."""


def _natural(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def sorted_runs(paths) -> list[Path]:
    """Run dirs oldest first: by name, with numeric suffixes compared as numbers."""
    return sorted(paths, key=_natural)


def create_run_dir(root: Path, base: str) -> Path:
    """Create ``root/base`` (or ``root/base-2``, ``-3``, ...) exclusively and return it."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create the run folder {root}: {e.strerror or e}") from None
    for n in range(1, 10_000):
        path = root / (base if n == 1 else f"{base}-{n}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise RunDirError(f"cannot create run dir {path}: {e.strerror or e}") from None
    raise RunDirError(f"cannot create a run dir under {root}: {base}-1..9999 all exist")


def new_run_dir(root: str | Path, seed: int) -> Path:
    """Create ``<root>/<stamp>-seed<seed>`` (``-2``, ``-3``, ... if that exists).

    In multi-process runs process 0 creates it exclusively, and its clock and its choice
    of suffix name the dir for every process.
    """
    import jax
    import numpy as np

    now = np.int64(time.time())
    # is_initialized first: process_count() would start the backends, after which the
    # caller can no longer set the number of CPU devices (configure_cpu_devices)
    multi = jax.distributed.is_initialized() and jax.process_count() > 1
    if multi:
        from jax.experimental import multihost_utils

        now = multihost_utils.broadcast_one_to_all(now)
    stamp = datetime.datetime.fromtimestamp(int(now)).strftime("%Y%m%d-%H%M%S")
    root, base = Path(root), f"{stamp}-seed{seed}"
    if not multi:
        return create_run_dir(root, base)
    path, n = None, np.int32(-1)
    if jax.process_index() == 0:
        try:
            path = create_run_dir(root, base)
            n = np.int32(1 if path.name == base else int(path.name.rsplit("-", 1)[1]))
        finally:
            n = multihost_utils.broadcast_one_to_all(n)
        return path
    n = int(multihost_utils.broadcast_one_to_all(n))
    if n < 0:
        raise RunDirError(f"process 0 could not create a run dir under {root}")
    return root / (base if n == 1 else f"{base}-{n}")


def latest_run_dir(root: str | Path, with_checkpoint: bool = True) -> Path:
    """The newest run dir under ``root`` (``<out_dir>/<name>``) that has a config.yaml and,
    ``with_checkpoint``, at least one checkpoint."""
    root = Path(root)
    runs = sorted_runs(
        p
        for p in root.glob("*")
        if (p / "config.yaml").is_file()
        and (not with_checkpoint or any((p / "checkpoints").glob("[0-9]*")))
    )
    if not runs:
        raise FileNotFoundError(f"--resume: no run to resume under {root}; start without --resume")
    return runs[-1]


def code_version() -> str:
    """The git commit of the code (``-dirty`` with uncommitted changes), or ``unknown``."""
    import subprocess

    here = Path(__file__).parent
    try:
        run = lambda *a: subprocess.run(  # noqa: E731
            ["git", *a], cwd=here, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("-dirty" if dirty else "")) if commit else "unknown"


def write_provenance(run_dir: Path) -> None:
    """``provenance.json``: the command line and code version that produced the run."""
    import json
    import shlex
    import sys

    record = {"command": shlex.join(sys.argv), "code_version": code_version()}
    (Path(run_dir) / "provenance.json").write_text(json.dumps(record, indent=2) + "\n")


class RunLock:
    """An exclusive, non-blocking ``fcntl.flock`` on ``<run_dir>/.lock``.

    The lock is released when the process exits, however it exits, so a killed run never
    leaves a stale lock behind; the file only records who held it last.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(f"cannot open the run lock {self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirError(
                f"run dir {self.path.parent} is in use by {holder}; wait for it to finish "
                "or stop it before resuming"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "learner_args":
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _safe(key: str, safe: tuple[str, ...]) -> bool:
    return any(key == s or key.startswith(f"{s}.") for s in safe)


def saved_config(run_dir: Path, cls=RunConfig, defaults=None):
    """The config a run was started with (``<run>/config.yaml``)."""
    from vsml_jax.config import load_config

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"--resume {run_dir}: no config.yaml there, so it is not a run dir (or its first "
            "start failed); start without --resume"
        )
    return load_config(path, cls=cls, defaults=defaults)


def check_resume_config(saved, cfg, run_dir: Path, safe: tuple[str, ...] = RESUME_SAFE) -> None:
    """Refuse a resume whose config differs from ``saved`` in a key outside ``safe``
    (a key, or a section whose every key is safe)."""
    old, new = _flatten(to_dict(saved)), _flatten(to_dict(cfg))
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key) and not _safe(key, safe):
            raise ConfigError(
                f"--resume {run_dir}: {key} was {old.get(key)!r} and is now {new.get(key)!r}; "
                f"it cannot change on resume (only {', '.join(safe)} can); "
                "start a new run instead"
            )


# files a start writes before any work: a fresh run dir holding only these is removed
# when its start fails
_HOUSEKEEPING = {"config.yaml", "provenance.json", "task.json", LOCK_NAME}


def _nothing_done(run_dir: Path) -> bool:
    return all(p.is_dir() or p.name in _HOUSEKEEPING for p in Path(run_dir).rglob("*"))


@contextlib.contextmanager
def open_run(root: str | Path, seed: int, run_dir: str | Path | None = None, resume: bool = False):
    """The run dir of a run, locked (by process 0) for as long as the ``with`` block runs.

    Without ``run_dir``: a fresh ``<root>/<stamp>-seed<seed>`` (:func:`new_run_dir`);
    with it: that folder, created if needed, which must exist when ``resume``. A fresh
    run dir whose start fails before any work was written (only config, provenance and
    task files) is removed, so that a later bare ``--resume`` cannot pick it up.
    """
    import jax

    is_main = jax.process_index() == 0
    created = run_dir is None
    if created:
        run_dir = new_run_dir(root, seed)
    else:
        run_dir = Path(run_dir)
        if resume and not run_dir.is_dir():
            raise FileNotFoundError(f"--resume {run_dir}: no such run dir")
        if not resume and is_main:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise RunDirError(f"cannot create run dir {run_dir}: {e}") from None
    lock = RunLock(run_dir) if is_main else None
    try:
        if lock is not None:
            lock.acquire()
        yield run_dir
    except BaseException:
        if created and is_main and _nothing_done(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            lock.release()


def write_config(run_dir: Path, cfg) -> None:
    """Write ``<run>/config.yaml`` atomically."""
    write_text(Path(run_dir) / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
