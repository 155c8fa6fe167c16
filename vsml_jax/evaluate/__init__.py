"""``python -m vsml_jax.evaluate``: the command of :mod:`vsml_jax.evaluation.cli`."""
