"""Paper §4.3 (Fig. 7): one V_M on input and output sizes it never saw in meta-training.

With no arguments this runs the CPU default of experiments/invariances/configs/invariances.yaml
(image sides scaled down from the paper's: see that file and docs/RESULTS.md):
  mixture   ES on tasks of 3, 4, 6 or 7 random MNIST classes (relabelled, 10 outputs),
            8x8, 6x6 or 10x10 images, a random projection on half of them
  plain     the same budget from the same start on the plain task: 10 classes, 8x8
  test      both VSMLs, tuned online SGD/Adam, the nearest class mean and k-NN on the
            same MNIST and Fashion-MNIST test episodes of unseen configurations:
            5 and 10 classes, 7x7 and 14x14 images, a projection, a pixel permutation
experiments/invariances/configs/invariances_paper.yaml holds the paper's sizes (28, 14, 32;
tests 21, 48).

Outputs go to runs/invariances/<run-id>/: figure.png (Fig. 7 style), results.csv,
results.md; mixture/ and plain/ are run directories (ship_pretrained, load_meta_params).
--resume [RUN_DIR] continues a killed run; finished stages are not recomputed.
"""

import sys
from pathlib import Path

from vsml_jax.runtime.cli import experiment_main

PRESET = Path(__file__).parent / "configs" / "invariances.yaml"
PROTOCOL = "experiments.invariances.protocol"
main = experiment_main(
    PROTOCOL,
    "InvariancesConfig",
    __doc__,
    PRESET,
    "base.es.generations=100",
    "results.md, results.csv, figure.png",
)

if __name__ == "__main__":
    sys.exit(main())
