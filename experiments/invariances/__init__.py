"""Paper Section 4.3: one V_M meta-trained on a task mixture, tested on unseen sizes.

`python -m experiments.invariances --help`:
main.py parses the command line, protocol.py runs the experiment, configs/ holds the
presets."""
