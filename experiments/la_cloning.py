"""Paper §4.1 (Fig. 5): clone backprop into the VSML cell, meta-test it, then improve it.

With no arguments this runs the CPU default of experiments/configs/la_cloning.yaml
(40 minutes on 2 cores, 10 with --set improve=false):
  clone     the shared cell trained by gradient descent to implement online SGD
            (w <- w - lr tanh(x) e) on random sequences, 3000 Adam steps
  test      the clone in a shallow (32 -> 10) and a deep (32 -> 32 -> 10) VSML network
            on 2000-step online MNIST and Fashion-MNIST test episodes, against the SGD it
            clones (same shape, lr and initial weights) and a tuned online SGD
  improve   ES (the quickstart's §4.2 setup) from the clone and from scratch, same budget;
            all learners on the same 32 meta-test episodes

Outputs go to runs/la_cloning/<run-id>/: cloning_loss.png, weights.png, fig5.png,
improve.png, improve_logx.png, results.csv, results.md; the clone is a run directory
(clone/) that `--set init_from=<run-id>/clone` or vsml_jax.load_learner read.
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

PRESET = Path(__file__).parent / "configs" / "la_cloning.yaml"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_args(p, str(PRESET), "clone.train_steps=500")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("vsml_jax").setLevel(logging.INFO)

    from vsml_jax.la_cloning import LACloningConfig, run

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"base.data.data_dir={args.data_dir}")
    try:
        run_dir = _resume_dir(args, overrides) if args.resume else None
        preset = run_dir / "config.yaml" if run_dir else args.config
        cfg = load_config(preset, overrides, cls=LACloningConfig, defaults=PRESET)
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
    print(f"done: {run_dir} (results.md, fig5.png, improve.png, weights.png, cloning_loss.png)")
    return 0


def _resume_dir(args, overrides) -> Path:
    from vsml_jax.la_cloning import LACloningConfig

    if args.resume is not True:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"--resume {run_dir}: not an la_cloning run folder")
        return run_dir
    cfg = load_config(args.config, overrides, cls=LACloningConfig, defaults=PRESET)
    runs = sorted(
        p for p in (Path(cfg.out_dir) / cfg.name).glob("*") if (p / "config.yaml").is_file()
    )
    if not runs:
        raise FileNotFoundError(f"--resume: no run under {Path(cfg.out_dir) / cfg.name}")
    return runs[-1]


if __name__ == "__main__":
    sys.exit(main())
