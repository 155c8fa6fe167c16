"""Paper Section 4.2: meta-train VSML on MNIST with OpenAI-ES.

python -m experiments.es_mnist                                # paper scale
python -m experiments.es_mnist --config experiments/es_mnist/configs/quickstart.yaml
python -m experiments.es_mnist --set es.population_pairs=128 --resume
"""

import sys
from pathlib import Path

from vsml_jax.runtime import cli

PRESET = str(Path(__file__).parent / "configs" / "es_mnist.yaml")


def main(argv=None) -> int:
    return cli.main(argv, default_preset=PRESET, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
