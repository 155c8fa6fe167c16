import sys

from vsml_jax.evaluation.cli import main

sys.exit(main())
