"""Paper Section 5: class-probability heat maps and fast association.

`python -m experiments.introspection --help`:
main.py parses the command line, protocol.py runs the experiment, configs/ holds the
presets."""
