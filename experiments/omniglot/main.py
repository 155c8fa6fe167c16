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

import sys
from pathlib import Path

from vsml_jax.runtime.cli import experiment_main

PRESET = Path(__file__).parent / "configs" / "omniglot.yaml"
PROTOCOL = "experiments.omniglot.protocol"
main = experiment_main(
    PROTOCOL,
    "OmniglotConfig",
    __doc__,
    PRESET,
    "eval_episodes=200",
    "results.csv, results.md, figure.png",
)

if __name__ == "__main__":
    sys.exit(main())
