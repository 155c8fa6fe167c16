import sys

from experiments.introspection.main import main

sys.exit(main())
