"""Run logging: JSON lines and TensorBoard scalars (process 0 writes)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def _plain(v):
    if isinstance(v, np.ndarray | np.generic):
        v = v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


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
        checkpoint by the interrupted run) are dropped, so none appears twice."""
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb = None
        if not enabled:
            return
        if resume_from is not None and self.path.exists():
            kept = [r for r in read_metrics(run_dir) if r.get("generation", 0) <= resume_from]
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            tmp.replace(self.path)
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_from)

    def write(self, record: dict, step: int) -> None:
        if not self.enabled:
            return
        record = {k: _plain(v) for k, v in record.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and k != "generation":
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
