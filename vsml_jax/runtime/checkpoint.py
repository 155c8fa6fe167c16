"""Orbax checkpoints of a meta-training run.

Orbax writes each step into a temporary folder and renames it when complete, so
a killed run never leaves a half-written checkpoint that looks finished. A
checkpoint that cannot be read raises :class:`CheckpointError` naming the
folder, and nothing is deleted.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from pathlib import Path

import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored."""


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


class Checkpointer:
    """Save/restore one pytree per generation under ``directory``."""

    def __init__(self, directory: str | Path, keep: int = 3):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            item_handlers=ocp.StandardCheckpointHandler(),  # so metadata reads before restores
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, tree) -> None:
        """Save and wait until it is on disk; Ctrl-C waits for the save to finish."""
        with _ctrl_c_after():
            self._manager.save(step, args=ocp.args.StandardSave(tree))
            self._manager.wait_until_finished()

    def restore(self, step: int, like):
        """Restore ``step`` into the structure (and shardings) of ``like``."""
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(like))
        except Exception as e:  # noqa: BLE001 - orbax raises many types
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} cannot be restored "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); move that folder away "
                f"to resume from an earlier checkpoint, or start without --resume"
            ) from None

    def restore_raw(self, step: int | None = None) -> dict:
        """Restore ``step`` (default: latest) as arrays on one local device, whatever the
        device count of the run that saved it."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint under {self.directory}")
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
            return self._manager.restore(step, args=ocp.args.StandardRestore(target))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} cannot be restored "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200]})"
            ) from None

    def close(self) -> None:
        self._manager.close()
