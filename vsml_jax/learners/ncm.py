"""Online nearest class mean (NCM): a strong, parameter-free online classifier.

Not in the VSML paper; it is here as the simple baseline an honest comparison
needs (Mensink et al. 2013 use NCM for classes arriving over time). It keeps a
running mean input per class, updated from the previous example and its label,
and predicts the class whose mean is nearest: ``logits_c = -||x - mu_c||^2 /
temperature``. Classes not yet seen get the lowest logit (ties broken by the
smallest running-mean distance among seen classes).

Two options take it apart for analysis (docs/RESULTS.md §4): ``features`` applies a fixed
elementwise map to every input first (``"tanh"``: NCM on ``tanh(x)``, the squashed inputs
the cloned backprop's forward pass reads), and ``norm_term=False`` drops the class-mean
norm from the distance, ``-||x - mu_c||^2 = 2 x.mu_c - ||mu_c||^2 - ||x||^2``, leaving
``2 x.mu_c``: a linear read-out of the class means, what a weight that accumulates
class-mean inputs (a Hebbian or early-SGD weight without a matching bias) computes.
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


FEATURES = {"identity": lambda x: x, "tanh": jnp.tanh}


def ncm(
    temperature: float | None = None,
    unseen_logit: float = -1e4,
    features: str = "identity",
    norm_term: bool = True,
) -> Learner:
    """Online nearest class mean with squared Euclidean distance; no meta-parameters.

    ``temperature`` scales the distances into logits (default: the input size, so a
    logit is minus the mean squared difference per input). ``features`` (a name in
    :data:`FEATURES`) maps the inputs first; ``norm_term=False`` scores ``2 x.mu_c``
    instead of ``-||x - mu_c||^2`` (module docstring).
    """
    if features not in FEATURES:
        raise ValueError(f"ncm features must be one of {sorted(FEATURES)}, got {features!r}")
    phi = FEATURES[features]

    def meta_init(key, task: TaskSpec):
        return {}

    def init(meta_params, task: TaskSpec, key):
        del meta_params, key
        D, C = task.input_dim, task.num_classes
        return NCMState(jnp.zeros((C, D)), jnp.zeros((C,)), jnp.zeros((D,)))

    def step(meta_params, state: NCMState, x, feedback: Feedback):
        x = phi(x)
        # learn from the previous example (its one-hot label is all zeros at t = 0)
        sums = state.sums + feedback.label[:, None] * state.prev_x[None, :]
        counts = state.counts + feedback.label
        means = sums / jnp.maximum(counts, 1.0)[:, None]
        if norm_term:
            dist = jnp.sum((x[None, :] - means) ** 2, axis=-1)
        else:  # -||x - mu||^2 without ||mu||^2 (and the class-independent ||x||^2)
            dist = -2.0 * means @ x
        scale = x.shape[-1] if temperature is None else temperature
        logits = jnp.where(counts > 0, -dist / scale, unseen_logit)
        return NCMState(sums, counts, x), logits

    name = (
        "ncm"
        + ("" if features == "identity" else f"_{features}")
        + ("" if norm_term else "_nonorm")
    )
    return Learner(name=name, meta_init=meta_init, init=init, step=step)
