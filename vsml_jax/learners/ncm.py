"""Online nearest class mean (NCM): a strong, parameter-free online classifier.

Not in the VSML paper; it is here as the simple baseline an honest comparison
needs (Mensink et al. 2013 use NCM for classes arriving over time). It keeps a
running mean input per class, updated from the previous example and its label,
and predicts the class whose mean is nearest: ``logits_c = -||x - mu_c||^2 /
temperature``. Classes not yet seen get the lowest logit (ties broken by the
smallest running-mean distance among seen classes).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from vsml_jax.learners.base import Feedback, Learner, TaskSpec


class NCMState(NamedTuple):
    sums: jax.Array  # [C, D] sum of the inputs seen per class
    counts: jax.Array  # [C]
    prev_x: jax.Array  # [D]


def ncm(temperature: float | None = None, unseen_logit: float = -1e4) -> Learner:
    """Online nearest class mean with squared Euclidean distance; no meta-parameters.

    ``temperature`` scales the distances into logits (default: the input size, so a
    logit is minus the mean squared difference per input).
    """

    def meta_init(key, task: TaskSpec):
        return {}

    def init(meta_params, task: TaskSpec, key):
        del meta_params, key
        D, C = task.input_dim, task.num_classes
        return NCMState(jnp.zeros((C, D)), jnp.zeros((C,)), jnp.zeros((D,)))

    def step(meta_params, state: NCMState, x, feedback: Feedback):
        # learn from the previous example (its one-hot label is all zeros at t = 0)
        sums = state.sums + feedback.label[:, None] * state.prev_x[None, :]
        counts = state.counts + feedback.label
        means = sums / jnp.maximum(counts, 1.0)[:, None]
        dist = jnp.sum((x[None, :] - means) ** 2, axis=-1)
        scale = x.shape[-1] if temperature is None else temperature
        logits = jnp.where(counts > 0, -dist / scale, unseen_logit)
        return NCMState(sums, counts, x), logits

    return Learner(name="ncm", meta_init=meta_init, init=init, step=step)
