"""Paper Section 4.1: clone backprop into the VSML cell, meta-test it, improve it.

`python -m experiments.la_cloning --help`:
main.py parses the command line, protocol.py runs the experiment, configs/ holds the
presets."""
