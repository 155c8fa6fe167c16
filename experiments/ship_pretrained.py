"""Ship a meta-learned learner into the package (vsml_jax/pretrained/NAME.{npz,json}).

python -m experiments.ship_pretrained RUN_DIR NAME --command "the command that made RUN_DIR"

RUN_DIR is any training run directory (config.yaml, task.json, checkpoints/), e.g. an
la_cloning run's clone/ or meta_train/finetune/. The model card records the run's config,
the command, the code version (git), the run's results.csv rows (--results) or else its
final meta-test (summary.json), and a small fixed MNIST check (8 test episodes of 300
steps) that tests/test_pretrained.py reproduces.
"""

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("name")
    p.add_argument("--command", required=True, help="the command that produced RUN_DIR")
    p.add_argument("--results", type=Path, help="a results.csv whose rows go into the card")
    p.add_argument("--learner", help="keep only the results rows of this learner label")
    args = p.parse_args(argv)

    import json

    from vsml_jax import pretrained
    from vsml_jax.learners.base import TaskSpec
    from vsml_jax.loading import restore_run
    from vsml_jax.runtime.rundir import code_version

    cfg, learner, meta_params, raw = restore_run(args.run_dir)
    task = TaskSpec(**json.loads((args.run_dir / "task.json").read_text()))
    extra = {k: np.asarray(v) for k, v in raw.items() if k == "readout"}
    version = code_version()
    meta_test = []
    if args.results and args.results.exists():
        import csv

        meta_test = [
            r
            for r in csv.DictReader(args.results.open())
            if args.learner is None or r["learner"] == args.learner
        ]
    summary = args.run_dir / "summary.json"
    if not meta_test and summary.exists():  # the run's own final meta-test
        meta_test = {
            k: v for k, v in json.loads(summary.read_text()).items() if k.startswith("eval/")
        }
    card = {
        "name": args.name,
        "command": args.command,
        "code_version": version,
        "source_run": str(args.run_dir),
        "meta_test": meta_test or "see docs/RESULTS.md",
    }
    card["check"] = check = dict(pretrained.CHECK)
    per_episode = pretrained.check_accuracy(
        pretrained.Pretrained(args.name, cfg, learner, meta_params, card, extra)
    )
    check["mean_acc"] = float(per_episode.mean())
    # numerics differ slightly across machines; the interval is the episodes' 95% CI
    check["ci95"] = max(0.02, float(1.96 * per_episode.std(ddof=1) / np.sqrt(len(per_episode))))
    out = Path(pretrained.__file__).parent / args.name
    pretrained.save(out, cfg, task, meta_params, card, **extra)
    print(f"shipped {args.name}: {out}.npz / .json; check {check}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
