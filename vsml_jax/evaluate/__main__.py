from vsml_jax.runtime import interrupts

interrupts.install()  # Ctrl-C during the imports below: one line, exit 130

import sys  # noqa: E402

from vsml_jax.evaluation.cli import main  # noqa: E402

sys.exit(main())
