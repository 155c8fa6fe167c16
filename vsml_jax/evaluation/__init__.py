"""Meta-testing: the one routine that runs learners on the same episodes and summarises them.

* :mod:`~vsml_jax.evaluation.core`: :func:`meta_test` (paired episodes across learners),
  :func:`evaluate`, :func:`summarize`, the hand-designed baselines, :class:`MetaTest`
  (training's periodic meta-test) and :func:`write_table`.
* :mod:`~vsml_jax.evaluation.tuning`: learning-rate tuning of the hand-designed learners.
* :mod:`~vsml_jax.evaluation.cli`: ``python -m vsml_jax.evaluate`` (any learners x
  datasets x task transforms).
"""

from vsml_jax.evaluation.core import (
    EVAL_SUMMARY,
    PAIRED_KEYS,
    PAIRED_WINDOWS,
    ROW_SUMMARY,
    Curves,
    Entry,
    MetaTest,
    cached_accuracy,
    cached_hand_designed,
    evaluate,
    hand_designed,
    meta_test,
    paired_columns,
    paired_difference,
    paired_markdown,
    paired_rows,
    sample_eval_episodes,
    summarize,
    summary_row,
    table_columns,
    tuned_baselines,
    tuned_learner,
    write_table,
)

__all__ = [
    "tuned_learner",
    "paired_markdown",
    "paired_rows",
    "paired_columns",
    "paired_difference",
    "PAIRED_WINDOWS",
    "PAIRED_KEYS",
    "ROW_SUMMARY",
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
    "EVAL_SUMMARY",
    "summary_row",
    "table_columns",
    "tuned_baselines",
    "write_table",
]
