from vsml_jax.runtime import interrupts

interrupts.install()  # Ctrl-C during the imports below: one line, exit 130

import sys  # noqa: E402

from experiments.la_cloning.main import main  # noqa: E402

sys.exit(main())
