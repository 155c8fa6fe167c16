"""Paper Section 4.4 (Fig. 8): meta-train learning algorithms, meta-test them on unseen datasets.

With no arguments this runs the CPU-sized default (measured: 29 min 26 s on a fresh clone,
2 cores shared with other jobs; docs/RESULTS.md section 2):
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
(all set in experiments/cross_dataset/configs/cross_dataset.yaml).

Paper scale is one flag away: --config experiments/cross_dataset/configs/cross_dataset_paper.yaml
(all nine LAs and variants, groups mnist / all / leave-one-out, 2000-step meta-tests).
Outputs go to runs/cross_dataset/<run-id>/: results.csv, results.md (with each LA's
generalisation gap: seen minus mean unseen accuracy; and its paired difference to adam
over steps 1-100), paired.csv/.md (every LA minus each hand-designed LA, on the same
episodes), figure.png, curves__<group>.png, meta_loss.png (every meta-trained LA's
meta-loss curve), and per-LA checkpoints under meta_train/ (--resume skips finished LAs).
"""

import sys
from pathlib import Path

from vsml_jax.runtime.cli import experiment_main

PRESET = Path(__file__).parent / "configs" / "cross_dataset.yaml"


def _flags(p) -> None:
    p.add_argument("--las", help="comma-separated LAs, e.g. vsml,sgd,maml@grad")
    p.add_argument("--train-sets", help="comma-separated groups: NAME, A+B, all, loo")
    p.add_argument("--test-sets", help="comma-separated test datasets")


def _overrides(args) -> list[str]:
    flags = {"las": args.las, "train_sets": args.train_sets, "test_sets": args.test_sets}
    return [f"{key}=[{value}]" for key, value in flags.items() if value]


main = experiment_main(
    "experiments.cross_dataset.protocol",
    "CrossDatasetConfig",
    __doc__,
    PRESET,
    "base.es.generations=100",
    "results.csv, results.md, figure.png",
    add_args=_flags,
    overrides=_overrides,
)

if __name__ == "__main__":
    sys.exit(main())
