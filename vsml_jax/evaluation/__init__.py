"""Meta-testing: the one routine that runs learners on the same episodes and summarises them.

* :mod:`~vsml_jax.evaluation.core`: :func:`meta_test` (paired episodes across learners),
  :func:`evaluate`, :func:`summarize`, the hand-designed baselines, :class:`MetaTest`
  (training's periodic meta-test) and :func:`write_table`.
* :mod:`~vsml_jax.evaluation.tuning`: learning-rate tuning of the hand-designed learners.
* :mod:`~vsml_jax.evaluation.cli`: ``python -m vsml_jax.evaluate`` (any learners x
  datasets x task transforms).
"""

from vsml_jax.evaluation.core import (
    Curves,
    Entry,
    MetaTest,
    cached_accuracy,
    cached_hand_designed,
    evaluate,
    hand_designed,
    meta_test,
    sample_eval_episodes,
    summarize,
    tuned_baselines,
    write_table,
)

__all__ = [
    "Curves",
    "Entry",
    "MetaTest",
    "cached_accuracy",
    "cached_hand_designed",
    "evaluate",
    "hand_designed",
    "meta_test",
    "sample_eval_episodes",
    "summarize",
    "tuned_baselines",
    "write_table",
]
