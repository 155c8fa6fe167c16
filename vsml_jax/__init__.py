"""vsml-jax: meta-learning learning algorithms (VSML and the systems it is compared with).

The public entry points: :func:`load_learner` (a run directory, a checkpoint or a shipped
learner, with its model card) and its online :class:`~vsml_jax.online.Session`
(``learner.start(key, input_dim, num_classes)``). Meta-training is ``python -m
experiments.es_mnist`` / :func:`vsml_jax.train.train`; meta-testing is ``python -m
vsml_jax.evaluate``.
"""

__all__ = ["TrainedLearner", "load_learner"]


def __getattr__(name: str):
    # imported on first use, so ``import vsml_jax.<module>`` stays light and cycle-free
    if name in __all__:
        from vsml_jax import loading

        return getattr(loading, name)
    raise AttributeError(f"module 'vsml_jax' has no attribute {name!r}")
