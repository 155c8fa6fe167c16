"""Paper §4.1 (Fig. 5): clone backprop into the VSML cell, meta-test it, then improve it.

With no arguments this runs the CPU default of experiments/la_cloning/configs/la_cloning.yaml
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
    "results.md, fig5.png, improve.png, weights.png, cloning_loss.png",
)

if __name__ == "__main__":
    sys.exit(main())
