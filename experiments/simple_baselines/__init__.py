"""The hand-designed learners alone on meta-test episodes.

`python -m experiments.simple_baselines --help`: main.py parses the command line (it
uses the quickstart preset of experiments/es_mnist/configs/)."""
