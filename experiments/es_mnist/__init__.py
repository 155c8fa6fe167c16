"""Paper Section 4.2: meta-train VSML on MNIST with OpenAI-ES (`make es-mnist`, `make quickstart`).

`python -m experiments.es_mnist --help`:
main.py parses the command line, configs/ holds the presets."""
