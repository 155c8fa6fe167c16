"""Omniglot few-shot, online, with dense and convolutional VSML.

`python -m experiments.omniglot --help`:
main.py parses the command line, protocol.py runs the experiment, configs/ holds the
presets."""
