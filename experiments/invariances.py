"""Paper §4.3 (Fig. 7): one V_M on input and output sizes it never saw in meta-training.

With no arguments this runs the CPU default of experiments/configs/invariances.yaml
(image sides scaled down from the paper's: see that file and docs/RESULTS.md):
  mixture   ES on tasks of 3, 4, 6 or 7 random MNIST classes (relabelled, 10 outputs),
            8x8, 6x6 or 10x10 images, a random projection on half of them
  plain     the same budget from the same start on the plain task: 10 classes, 8x8
  test      both VSMLs, tuned online SGD/Adam, the nearest class mean and k-NN on the
            same MNIST and Fashion-MNIST test episodes of unseen configurations:
            5 and 10 classes, 7x7 and 14x14 images, a projection, a pixel permutation
experiments/configs/invariances_paper.yaml holds the paper's sizes (28, 14, 32; tests 21, 48).

Outputs go to runs/invariances/<run-id>/: figure.png (Fig. 7 style), results.csv,
results.md; mixture/ and plain/ are run directories (ship_pretrained, load_meta_params).
--resume [RUN_DIR] continues a killed run; finished stages are not recomputed.
"""

import argparse
import datetime
import logging
import sys
from pathlib import Path

import yaml

from vsml_jax.cli import add_run_args, report, user_errors
from vsml_jax.config import ConfigError, load_config, to_dict

PRESET = Path(__file__).parent / "configs" / "invariances.yaml"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_args(p, str(PRESET), "base.es.generations=100")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("vsml_jax").setLevel(logging.INFO)

    from vsml_jax.invariances import InvariancesConfig, run

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"base.data.data_dir={args.data_dir}")
    try:
        run_dir = _resume_dir(args, overrides) if args.resume else None
        preset = run_dir / "config.yaml" if run_dir else args.config
        cfg = load_config(preset, overrides, cls=InvariancesConfig, defaults=PRESET)
    except (ConfigError, FileNotFoundError) as e:
        return report(e)
    if run_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(cfg.out_dir) / cfg.name / f"{stamp}-seed{cfg.seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    print(f"run dir: {run_dir}", flush=True)
    try:
        run(cfg, run_dir)
    except user_errors() as e:
        return report(e)
    print((run_dir / "results.md").read_text())
    print(f"done: {run_dir} (results.md, results.csv, figure.png)")
    return 0


def _resume_dir(args, overrides) -> Path:
    from vsml_jax.invariances import InvariancesConfig

    if args.resume is not True:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"--resume {run_dir}: not an invariances run folder")
        return run_dir
    cfg = load_config(args.config, overrides, cls=InvariancesConfig, defaults=PRESET)
    runs = sorted(
        p for p in (Path(cfg.out_dir) / cfg.name).glob("*") if (p / "config.yaml").is_file()
    )
    if not runs:
        raise FileNotFoundError(f"--resume: no run under {Path(cfg.out_dir) / cfg.name}")
    return runs[-1]


if __name__ == "__main__":
    sys.exit(main())
