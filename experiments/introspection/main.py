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

import sys
from pathlib import Path

from vsml_jax.runtime.cli import experiment_main

PRESET = Path(__file__).parent / "configs" / "introspection.yaml"
PROTOCOL = "experiments.introspection.protocol"
main = experiment_main(
    PROTOCOL,
    "IntrospectionConfig",
    __doc__,
    PRESET,
    "num_streams=128",
    "results.md, results.csv, heatmap.png, occurrence.png",
)

if __name__ == "__main__":
    sys.exit(main())
