"""Omniglot few-shot, online, with dense and convolutional VSML (the paper's Omniglot runs).

With no arguments this runs the CPU default of experiments/omniglot/configs/omniglot.yaml
(measured: about 37 minutes wall on 2 cores shared with other runs, load 10-14;
dense VSML 13 min, conv VSML 10 min, MAML 3 min, meta-tests the rest):
  meta-train  5-way 1-shot episodes (5 queries) of Omniglot small1, 14x14 grey:
              vsml (dense, over a fresh random projection to 32 per episode; ES, 64 pairs,
              2000 generations), vsml@conv (3x3 stride-2 conv VSML layer with 4 channels,
              then dense; ES, 32 pairs, 300 generations), maml (online SGD from a
              meta-learned init and lr, meta-gradients, 1000 steps)
  meta-test   5-way 1-shot, 5-way 5-shot, 20-way 1-shot on the 106 characters of small2
              that small1 lacks; 500 episodes of N*K support examples then one query,
              labels shown after every prediction, scored on the query; the same
              episodes for every LA, with online ncm, 1nn and lr-tuned sgd
Outputs go to runs/omniglot/<run-id>/: results.csv, results.md, figure.png, and the
meta-training runs under meta_train/; --resume [RUN_DIR] skips finished work.
"""

import argparse
import logging
import sys
from pathlib import Path

import yaml

from vsml_jax.config import ConfigError, to_dict
from vsml_jax.runtime.cli import add_run_args, report, run_config, user_errors

PRESET = Path(__file__).parent / "configs" / "omniglot.yaml"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_args(p, str(PRESET), "eval_episodes=200")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("vsml_jax").setLevel(logging.INFO)

    from experiments.omniglot.protocol import OmniglotConfig, run
    from vsml_jax.runtime.rundir import RunLock, new_run_dir

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"base.data.data_dir={args.data_dir}")
    try:
        cfg, run_dir = run_config(
            args.resume, args.config, overrides, OmniglotConfig, PRESET, "an omniglot run folder"
        )
    except (ConfigError, OSError) as e:
        return report(e)
    try:
        if run_dir is None:  # exclusive, and the same dir for every process
            run_dir = new_run_dir(Path(cfg.out_dir) / cfg.name, cfg.base.seed)
        with RunLock(run_dir):
            (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
            print(f"run dir: {run_dir}", flush=True)
            run(cfg, run_dir)
    except user_errors() as e:
        return report(e)
    except KeyboardInterrupt:
        print(f"interrupted; finished work is kept: --resume {run_dir}", file=sys.stderr)
        return 130
    print((run_dir / "results.md").read_text())
    print(f"done: {run_dir} (results.csv, results.md, figure.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
