import sys

from experiments.invariances.main import main

sys.exit(main())
