"""Paper Section 4.2: meta-train VSML on MNIST with OpenAI-ES.

python -m experiments.es_mnist                                # paper scale
python -m experiments.es_mnist --config experiments/configs/quickstart.yaml
python -m experiments.es_mnist --set es.population_pairs=128 --resume
"""

import sys
from pathlib import Path

if __name__ == "__main__":  # Ctrl-C during the imports below: one line, exit 130
    from vsml_jax import interrupts

    interrupts.install()

from vsml_jax.cli import main  # noqa: E402

PRESET = str(Path(__file__).parent / "configs" / "es_mnist.yaml")

if __name__ == "__main__":
    sys.exit(main(default_preset=PRESET, description=__doc__))
