"""Paper §4.1 (Fig. 5): backprop cloned into the VSML cell, meta-tested at 784 inputs.

With no arguments this runs the CPU default of experiments/la_cloning/configs/la_cloning.yaml:
  clone     the V_M of vsml/backprop.py's backprop_cell, with which the paper's LSTM cell
            is the SGD cell (--set clone_method=train: the cloning objective instead)
  test      the clone in a shallow (784 -> 10) and a deep (784 -> 32 -> 10) VSML network
            on 2000-step online MNIST and Fashion-MNIST test episodes, against the SGD it
            clones (same network, lr and initial weights), tuned online SGD/Adam, NCM,
            k-NN and 1-NN, all on the same 32 episodes; paired clone - SGD differences
            per 250-step window; then 16 shallow MNIST episodes of 10,000 steps
  improve   (--set improve.trainers=[grad,es]) meta-gradients and/or ES from the clone on
            14x14 MNIST-train images, 500-step episodes with the first 100 steps weighted
            up, meta-tested at 784 on the same episodes (paired differences against the
            clone, tuned Adam, NCM and 1-NN in improve/results.md)
experiments/la_cloning/configs/la_cloning_paper.yaml is the preset with 32 episodes everywhere.

Outputs go to runs/la_cloning/<run-id>/: weights.png, fig5.png, results.csv, results.md,
windows/results.md (and improve.png, improve_logx.png, improve/results.md; cloning_loss.png
when trained);
the clone is a run directory (clone/) that `--set init_from=<run-id>/clone` or
vsml_jax.load_learner read. --resume [RUN_DIR] continues a killed run; finished stages
are not recomputed.
"""

import sys
from pathlib import Path

from vsml_jax.runtime.cli import experiment_main

PRESET = Path(__file__).parent / "configs" / "la_cloning.yaml"
PROTOCOL = "experiments.la_cloning.protocol"
main = experiment_main(
    PROTOCOL,
    "LACloningConfig",
    __doc__,
    PRESET,
    "clone.train_steps=500",
    "results.md, windows/results.md, fig5.png, weights.png",
)

if __name__ == "__main__":
    sys.exit(main())
