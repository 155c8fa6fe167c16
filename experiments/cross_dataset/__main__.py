import sys

from experiments.cross_dataset.main import main

sys.exit(main())
