import sys

from experiments.omniglot.main import main

sys.exit(main())
