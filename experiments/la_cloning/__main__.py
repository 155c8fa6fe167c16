import sys

from experiments.la_cloning.main import main

sys.exit(main())
