"""Print the meta-test table of a finished meta-training run (for docs/RESULTS.md).

    python -m experiments.report runs/cpu_long/<run-id>

Reads ``summary.json`` (written at the end of a run) and ``metrics.jsonl``.
"""

import json
import sys
from pathlib import Path

from vsml_jax.runtime.metrics import read_metrics


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    run = Path(argv[0])
    summary = json.loads((run / "summary.json").read_text())
    records = read_metrics(run)
    losses = [r for r in records if r.get("meta_loss") is not None]
    lrs = next((r["baseline_lrs"] for r in records if "baseline_lrs" in r), {})
    print(f"run: {run}")
    block_s = sum(1.0 / r["steps_per_s"] for r in records if r.get("steps_per_s"))
    print(
        f"steps: {summary['steps']}; time in training steps (sum over blocks, "
        f"meta-tests excluded): {block_s / 60:.1f} min"
    )
    if losses:
        first, last = losses[0], losses[-1]
        tail = losses[-min(100, len(losses)) :]
        mean_tail = sum(r["meta_loss"] for r in tail) / len(tail)
        print(
            f"meta-loss: step {first['generation']}: {first['meta_loss']:.3f}; "
            f"step {last['generation']}: {last['meta_loss']:.3f} "
            f"(mean of the last {len(tail)}: {mean_tail:.3f})"
        )
    if lrs:
        print(
            "baseline learning rates (tuned on meta-training episodes): "
            + ", ".join(f"{k} {v:g}" for k, v in lrs.items())
        )
    rows: dict[tuple[str, str], dict] = {}
    for key, value in summary.items():
        if key.startswith("eval/"):
            _, dataset, learner, metric = key.split("/")
            rows.setdefault((dataset, learner), {})[metric] = value
    print()
    print(
        "| test set | learner | acc. steps 1-100 | mean acc. (all steps) | last 100 steps "
        "| episodes x steps |"
    )
    print("|---|---|---|---|---|---|")
    for (dataset, learner), m in rows.items():
        first_ci = m.get("first100_ci95", float("nan"))
        print(
            f"| {dataset} | {learner} | {m['first100_acc']:.3f} ± {first_ci:.3f} | "
            f"{m['mean_acc']:.3f} ± {m['ci95']:.3f} | {m['last100_acc']:.3f} | "
            f"{m['episodes']} x {m['steps']} |"
        )
    print("\n(± is the 95% confidence interval over episodes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
