"""Run logging: JSON lines and TensorBoard scalars (process 0 writes)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _plain(v):
    if isinstance(v, np.ndarray | np.generic):
        v = v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _write_error(e: OSError, path: Path) -> OSError:
    """``e`` as one line naming ``path`` (a full disk's OSError names no file)."""
    return OSError(
        e.errno,
        f"cannot write {path} ({e.strerror or e}); free space there (a full disk?) and "
        "continue with --resume: the last checkpoint is kept",
    )


class MetricsWriter:
    """Append one JSON object per record to ``metrics.jsonl``; mirror scalars to TensorBoard."""

    def __init__(
        self,
        run_dir: str | Path,
        tensorboard: bool = True,
        enabled: bool = True,
        resume_from: int | None = None,
    ):
        """With ``resume_from``, records of later generations (written after the last
        checkpoint by the interrupted run) are dropped, so none appears twice; with
        ``resume_from=0`` (a restart with no checkpoint) every old record is."""
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb = None
        if not enabled:
            return
        if resume_from is not None and self.path.exists():
            old = read_metrics(run_dir)  # drops a torn last line
            # a restart from generation 0 keeps nothing, not even the old baseline rows
            kept = [r for r in old if 0 < resume_from and r.get("generation", 0) <= resume_from]
            tmp = self.path.with_suffix(".tmp")
            try:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise _write_error(e, tmp) from None
            tmp.replace(self.path)
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_from)

    def write(self, record: dict, step: int) -> None:
        if not self.enabled:
            return
        record = {k: _plain(v) for k, v in record.items()}
        try:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:  # a torn last line is dropped when the run resumes
            raise _write_error(e, self.path) from None
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and k != "generation":
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of ``<run>/metrics.jsonl``.

    A torn last line (a crash in the middle of a write) is dropped with a warning; any
    other line that is not JSON raises ``ValueError`` naming the file and the line.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                log.warning("%s: dropping its torn last line %d (%s)", path, i + 1, e)
                continue
            raise ValueError(
                f"{path}, line {i + 1}, is not JSON ({e}); fix or remove that line"
            ) from None
    return records
