import sys

from experiments.es_mnist.main import main

sys.exit(main())
