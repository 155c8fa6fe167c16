"""Paper §5 (Fig. 9): a meta-learned VSML and online SGD/Adam/NCM on the same short streams.

With no arguments this runs the CPU default of experiments/introspection/configs/introspection.yaml
(a few minutes): the shipped VSML `invariances` (meta-trained by experiments.invariances
on a task mixture) on 64 MNIST test streams of 50 steps with 3, 4 or 5 random classes,
against SGD and Adam (learning rates tuned on training streams) and the nearest class
mean. `--set learner=clone_backprop_es` or `--set learner=<run dir>` picks another VSML.

Outputs go to runs/introspection/<run-id>/: heatmap.png (per-step class probabilities,
one panel per learner), occurrence.png (accuracy at the k-th occurrence of a class),
results.csv and results.md (fast association: p(correct) at the next occurrence of a
class after the first error on it, with 95% intervals over streams).
"""

import argparse
import logging
import sys
from pathlib import Path

import yaml

from vsml_jax.config import ConfigError, load_config, to_dict
from vsml_jax.runtime.cli import report, user_errors

PRESET = Path(__file__).parent / "configs" / "introspection.yaml"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default=str(PRESET), help="YAML preset (default: %(default)s)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set num_streams=128 (repeatable)",
    )
    p.add_argument("--data-dir", default=None, help="TFDS data dir")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("vsml_jax").setLevel(logging.INFO)

    from experiments.introspection.protocol import IntrospectionConfig, run

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data_dir={args.data_dir}")
    try:
        cfg = load_config(args.config, overrides, cls=IntrospectionConfig, defaults=PRESET)
    except (ConfigError, FileNotFoundError) as e:
        return report(e)
    from vsml_jax.runtime.rundir import new_run_dir

    run_dir = new_run_dir(Path(cfg.out_dir) / cfg.name, cfg.seed)  # exclusive
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    print(f"run dir: {run_dir}", flush=True)
    try:
        run(cfg, run_dir)
    except user_errors() as e:
        return report(e)
    print((run_dir / "results.md").read_text())
    print(f"done: {run_dir} (results.md, results.csv, heatmap.png, occurrence.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
