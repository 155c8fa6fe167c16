"""Paper Section 4.4 (Fig. 8): meta-train learning algorithms, meta-test them on unseen datasets.

With no arguments this runs the CPU-sized default (sized for <= 30 minutes on 2 cores):
  LAs         vsml (meta-trained with ES: 64 antithetic pairs, 1500 generations, 100-step
              episodes); the rivals meta_rnn (LSTM 32, also reading x_{t-1}), hebbian,
              fw_memory (LSTM 32, 8^3 memory) and fwp, meta-trained by meta-gradients
              through the episodes (batch 16, 1000-1500 steps); online sgd and adam (lr
              tuned on the meta-training set), online nearest class mean (ncm), online
              k-nearest neighbours over the last 2000 examples (knn with k = 5, and 1nn)
  meta-train  mnist
  meta-test   mnist (seen), fashion_mnist, kmnist, cifar10, random, sum (unseen);
              16 online episodes of 500 steps each, the same episodes for every LA
  inputs      grey 28x28, standardised, a fresh random projection to 32 dims per episode;
              labels padded to 10 classes
(all set in experiments/configs/cross_dataset.yaml).

Paper scale is one flag away: --config experiments/configs/cross_dataset_paper.yaml
(all nine LAs and variants, groups mnist / all / leave-one-out, 2000-step meta-tests).
Outputs go to runs/cross_dataset/<run-id>/: results.csv, results.md (with each LA's
generalisation gap: seen minus mean unseen accuracy; and its paired difference to adam
over steps 1-100), figure.png, curves__<group>.png, meta_loss.png (every meta-trained
LA's meta-loss curve), and per-LA checkpoints under meta_train/ (--resume skips
finished LAs).
"""

import argparse
import contextlib
import logging
import sys
from pathlib import Path

import yaml

from vsml_jax.cli import add_run_args, report, run_config, user_errors
from vsml_jax.config import ConfigError, to_dict

PRESET = Path(__file__).parent / "configs" / "cross_dataset.yaml"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_args(p, str(PRESET), "base.es.generations=100")
    p.add_argument("--las", help="comma-separated LAs, e.g. vsml,sgd,maml@grad")
    p.add_argument("--train-sets", help="comma-separated groups: NAME, A+B, all, loo")
    p.add_argument("--test-sets", help="comma-separated test datasets")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("vsml_jax").setLevel(logging.INFO)

    from vsml_jax.cross_dataset import CrossDatasetConfig, run

    overrides = list(args.overrides)
    for flag, key in (
        (args.las, "las"),
        (args.train_sets, "train_sets"),
        (args.test_sets, "test_sets"),
    ):
        if flag:
            overrides.append(f"{key}=[{flag}]")
    if args.data_dir:
        overrides.append(f"base.data.data_dir={args.data_dir}")
    try:
        # a resumed run keeps its own saved config; new flags apply on top of it
        cfg, run_dir = run_config(
            args.resume,
            args.config,
            overrides,
            CrossDatasetConfig,
            PRESET,
            "a cross-dataset run folder",
        )
    except (ConfigError, OSError) as e:
        return report(e)
    import jax

    from vsml_jax.meta.sharding import configure_cpu_devices, maybe_initialize_distributed
    from vsml_jax.rundir import RunLock, new_run_dir

    b = cfg.base
    try:
        # every process of a jax.distributed run agrees on process 0's run dir; only
        # process 0 writes files here (each meta-training run dir is locked in train())
        configure_cpu_devices(b.cpu_devices, divides=b.es.population_size)
        maybe_initialize_distributed(
            b.distributed, b.distributed_heartbeat_timeout_s, b.distributed_init_timeout_s
        )
        is_main = jax.process_index() == 0
        if run_dir is None:
            run_dir = new_run_dir(Path(cfg.out_dir) / cfg.name, b.seed)
        with RunLock(run_dir) if is_main else contextlib.nullcontext():
            if is_main:
                (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
                print(f"run dir: {run_dir}", flush=True)
            rows = run(cfg, run_dir)
    except user_errors() as e:
        return report(e)
    except KeyboardInterrupt:
        print(f"interrupted; finished LAs are kept: --resume {run_dir}", file=sys.stderr)
        return 130
    if not is_main:
        return 0
    print((run_dir / "results.md").read_text())
    print(f"done: {run_dir} (results.csv, results.md, figure.png; {len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
