"""Learning-rate tuning of hand-designed learners by their mean online loss.

The VSML paper (Kirsch & Schmidhuber 2021) tunes the learning rates of its SGD/Adam
baselines on the meta-training distribution; :func:`tune_lr` does that grid search
on a batch of episodes. (Kept out of :mod:`vsml_jax.learners.sgd` because it needs
:mod:`vsml_jax.episode`, which itself imports the learners package.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from vsml_jax.episode import batch_episode_loss
from vsml_jax.learners.base import Learner, TaskSpec


def tune_lr(
    make_learner: Callable[[float], Learner],
    lrs: Sequence[float],
    xs: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    num_classes: int,
) -> tuple[float, np.ndarray]:
    """Pick the learning rate with the lowest mean online cross-entropy.

    Args:
      make_learner: ``lr -> Learner``, e.g. ``lambda lr: sgd(lr=lr, hidden=(160,))``.
        It is called with a *traced* scalar ``lr`` (one compilation for all rates), so
        it must use ``lr`` only arithmetically (as optax optimisers do).
      lrs: candidate learning rates.
      xs: ``[N, T, D]`` inputs of ``N`` episodes.
      labels: ``[N, T]`` integer labels.
      key: PRNG key; the same per-episode keys (initial weights) are used for every lr.
      num_classes: number of classes.

    Returns:
      ``(best_lr, mean_losses)`` with ``mean_losses[i]`` the loss of ``lrs[i]``
      averaged over steps and episodes (``inf`` where it was not finite).
    """
    chex.assert_rank(xs, 3)
    chex.assert_rank(labels, 2)
    chex.assert_equal_shape_prefix((xs, labels), 2)
    if len(lrs) == 0:
        raise ValueError("tune_lr needs at least one learning rate")
    task = TaskSpec(input_dim=xs.shape[-1], num_classes=num_classes)

    @jax.jit
    def mean_loss(lr):
        learner = make_learner(lr)
        meta_params = learner.meta_init(key, task)
        return batch_episode_loss(learner, meta_params, xs, labels, key, num_classes)

    losses = np.array([float(mean_loss(jnp.asarray(lr, jnp.float32))) for lr in lrs])
    losses = np.where(np.isfinite(losses), losses, np.inf)
    best = int(np.argmin(losses))
    return float(lrs[best]), losses
