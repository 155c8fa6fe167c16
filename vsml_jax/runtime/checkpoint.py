"""Orbax checkpoints of a meta-training run.

Orbax writes each step into a temporary folder and renames it when complete, so
a killed run never leaves a half-written checkpoint that looks finished. Orbax does
not checksum array data, so once a step is on disk a SHA-256 digest of its arrays is
written into its folder (``vsml_checksum.json``, atomically) and checked on every
restore: a bit flip that still decodes is caught too. A checkpoint that cannot be read,
or whose data do not match its digest, raises :class:`CheckpointError` naming the
folder, and nothing is deleted. (A step without a digest, from an older version or a
run killed between the save and the digest, restores unchecked.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)

CHECKSUM = "vsml_checksum.json"


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored."""


def _host(leaf) -> np.ndarray | None:
    """A leaf's full value on this host, or None where this process holds only a shard."""
    import jax

    if isinstance(leaf, jax.Array):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if not leaf.is_fully_addressable:
            return np.asarray(leaf.addressable_data(0)) if leaf.is_fully_replicated else None
    return np.asarray(leaf)


def tree_digest(tree) -> str | None:
    """A SHA-256 digest of the arrays of ``tree`` (their dtypes, shapes and bytes), the
    same whatever the pytree's container types (a raw restore returns dicts); None if
    this process does not hold every array in full."""
    import jax

    digests = []
    for leaf in jax.tree.leaves(tree):
        a = _host(leaf)
        if a is None:
            return None
        h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
        digests.append(h.hexdigest())
    return hashlib.sha256("".join(sorted(digests)).encode()).hexdigest()


def _drop_closed_loop_noise(unraisable) -> None:
    """After a failed orbax restore, tensorstore's pending reads call back into the
    closed asyncio loop (``RuntimeError: Event loop is closed``) and its other reads'
    coroutines are dropped with their errors, each printing a traceback of ~60 lines;
    the restore's own error already says what is wrong."""
    e = unraisable.exc_value
    if isinstance(e, RuntimeError) and str(e) == "Event loop is closed":
        return
    if str(e).startswith(_READ_ERROR):
        return
    _previous_unraisablehook(unraisable)


_READ_ERROR = "Encountered error while reading array index"


def _reason(e: Exception) -> str:
    """``e`` in a few words: its type and first line, without tensorstore's spec dump."""
    text = (str(e).splitlines() or [""])[0].split(". See full TensorStore details")[0]
    return f"{type(e).__name__}: {text[:200]}"


_previous_unraisablehook = sys.unraisablehook


def _quiet_restore_failures() -> None:
    global _previous_unraisablehook
    if sys.unraisablehook is not _drop_closed_loop_noise:
        _previous_unraisablehook = sys.unraisablehook
        sys.unraisablehook = _drop_closed_loop_noise


@contextlib.contextmanager
def _ctrl_c_after():
    """Hold back SIGINT inside the block and raise KeyboardInterrupt after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *a: caught.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _absl_quiet():
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


class Checkpointer:
    """Save/restore one pytree per generation under ``directory``."""

    def __init__(self, directory: str | Path, keep: int = 3):
        self.directory = Path(directory).absolute()
        try:
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
                item_handlers=ocp.StandardCheckpointHandler(),  # metadata reads before restores
            )
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. a damaged _CHECKPOINT_METADATA
            raise CheckpointError(
                f"the checkpoints under {self.directory} cannot be listed "
                f"({_reason(e)}); a step folder's "
                "_CHECKPOINT_METADATA is damaged: move that folder away"
            ) from None

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, tree) -> None:
        """Save and wait until it is on disk, then write its digest; Ctrl-C waits for
        both to finish."""
        import jax

        with _ctrl_c_after():
            digest = tree_digest(tree)
            try:
                with _absl_quiet():  # a failed save logs hundreds of lines; one is enough
                    self._manager.save(step, args=ocp.args.StandardSave(tree))
                    self._manager.wait_until_finished()
                if digest is not None and jax.process_index() == 0:
                    path = self.directory / str(step) / CHECKSUM
                    tmp = path.with_name(path.name + ".tmp")
                    tmp.write_text(json.dumps({"sha256": digest}) + "\n")
                    os.replace(tmp, path)
            except Exception as e:  # noqa: BLE001 - e.g. a full disk (RESOURCE_EXHAUSTED)
                raise self._save_failed(step, e) from None

    def _save_failed(self, step: int, e: Exception) -> CheckpointError:
        """Remove orbax's temporary folder of the failed save (a step it completed stays,
        with or without its checksum) and say where the last complete checkpoint is."""
        import shutil

        for left in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
            shutil.rmtree(left, ignore_errors=True)
        folder = self.directory / str(step)
        try:
            self._manager.reload()
            latest = self._manager.latest_step()
        except Exception:  # noqa: BLE001
            latest = None
        kept = (
            f"the last complete checkpoint, {self.directory / str(latest)}, is intact"
            if latest is not None
            else "there is no earlier checkpoint"
        )
        reason = _reason(e)
        return CheckpointError(
            f"saving checkpoint {folder} failed ({reason}); {kept}: free space under "
            f"{self.directory} (a full disk?) and continue with --resume"
        )

    def _verify(self, step: int, tree) -> None:
        path = self.directory / str(step) / CHECKSUM
        # the mean meta-parameters are never saved non-finite (the ES's best_fitness
        # starts at inf): a check for steps without a digest too
        mean = tree.get("mean") if isinstance(tree, dict) else None
        if mean is not None and (a := _host(mean)) is not None and not np.isfinite(a).all():
            raise CheckpointError(
                f"checkpoint {path.parent} is corrupt: its mean meta-parameters are not all "
                "finite; move that folder away to use an earlier checkpoint, or start "
                "without --resume"
            )
        if not path.is_file():
            log.debug("%s has no %s: restored unchecked", path.parent, CHECKSUM)
            return
        try:
            want = json.loads(path.read_text())["sha256"]
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"checkpoint {path.parent}: its checksum file {CHECKSUM} is corrupt ({e}); "
                "move that folder away to use an earlier checkpoint"
            ) from None
        got = tree_digest(tree)
        if got is not None and got != want:
            raise CheckpointError(
                f"checkpoint {path.parent} is corrupt: its data do not match the checksum "
                f"saved with it ({CHECKSUM}); move that folder away to use an earlier "
                "checkpoint, or start without --resume"
            )

    def restore(self, step: int, like):
        """Restore ``step`` into the structure (and shardings) of ``like``."""
        _quiet_restore_failures()
        try:
            tree = self._manager.restore(step, args=ocp.args.StandardRestore(like))
        except Exception as e:  # noqa: BLE001 - orbax raises many types
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} cannot be restored "
                f"({_reason(e)}); move that folder away "
                f"to resume from an earlier checkpoint, or start without --resume"
            ) from None
        self._verify(step, tree)
        return tree

    def restore_raw(self, step: int | None = None) -> dict:
        """Restore ``step`` (default: latest) as arrays on one local device, whatever the
        device count of the run that saved it."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint under {self.directory}")
        _quiet_restore_failures()
        try:
            # a target on this process's first device: the checkpoint's own shardings
            # name the devices of the run that saved it, which may not exist here
            import jax

            meta = self._manager.item_metadata(step)
            tree = getattr(meta, "tree", meta)
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            target = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree
            )
            tree = self._manager.restore(step, args=ocp.args.StandardRestore(target))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} cannot be restored ({_reason(e)})"
            ) from None
        self._verify(step, tree)
        return tree

    def close(self) -> None:
        self._manager.close()
