"""Paper Section 4.4: meta-train learning algorithms, meta-test them on unseen datasets.

`python -m experiments.cross_dataset --help`:
main.py parses the command line, protocol.py runs the experiment, configs/ holds the
presets."""
