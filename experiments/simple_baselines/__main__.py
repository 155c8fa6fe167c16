import sys

from experiments.simple_baselines.main import main

sys.exit(main())
