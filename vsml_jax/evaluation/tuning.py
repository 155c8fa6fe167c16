"""Learning-rate tuning of hand-designed learners by their mean online loss.

The VSML paper (Kirsch & Schmidhuber 2021) tunes the learning rates of its SGD/Adam
baselines on the meta-training distribution; :func:`tune_lr` does that grid search
on a batch of episodes, extending the grid past its edge while the best rate lies
on it, so that a baseline is not under-tuned by the grid's range. (Kept out of
:mod:`vsml_jax.learners.sgd` because it needs :mod:`vsml_jax.episode`, which itself
imports the learners package.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from vsml_jax.episode import batch_episode_loss
from vsml_jax.learners.base import Learner, TaskSpec

MAX_EXTENSIONS = 6  # rates added beyond the grid's edges, at most, by default


class LrSearch(NamedTuple):
    """The outcome of :func:`tune_lr`.

    lr: the rate with the lowest mean online loss.
    interior: whether it has a tried rate on each side (else the best may lie beyond).
    lrs: every rate tried, ascending (the grid and its extensions).
    losses: their mean online losses (``inf`` where not finite).
    """

    lr: float
    interior: bool
    lrs: tuple[float, ...]
    losses: np.ndarray

    def edge_note(self, name: str) -> str:
        """One line saying that ``name``'s tuned rate is still on the tried range's edge."""
        side = "smallest" if self.lr == self.lrs[0] else "largest"
        return (
            f"{name}: the tuned lr {self.lr:g} is the {side} of those tried "
            f"({', '.join(f'{x:g}' for x in self.lrs)}); the best may lie beyond it"
        )


def _step_ratio(lrs: Sequence[float]) -> float:
    """The grid's geometric step (3 for a one-rate grid)."""
    if len(lrs) < 2:
        return 3.0
    return float((lrs[-1] / lrs[0]) ** (1.0 / (len(lrs) - 1)))


def tune_lr(
    make_learner: Callable[[float], Learner],
    lrs: Sequence[float],
    xs: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    num_classes: int,
    max_extensions: int = MAX_EXTENSIONS,
) -> LrSearch:
    """Pick the learning rate with the lowest mean online cross-entropy.

    The grid ``lrs`` is searched first; while the best rate is its smallest (largest)
    one, one more rate a geometric grid step below (above) it is tried, at most
    ``max_extensions`` times in all. ``interior`` tells whether the search ended with
    tried rates on both sides of the best.

    Args:
      make_learner: ``lr -> Learner``, e.g. ``lambda lr: sgd(lr=lr, hidden=(160,))``.
        It is called with a *traced* scalar ``lr`` (one compilation for all rates), so
        it must use ``lr`` only arithmetically (as optax optimisers do).
      lrs: candidate learning rates (positive).
      xs: ``[N, T, D]`` inputs of ``N`` episodes.
      labels: ``[N, T]`` integer labels.
      key: PRNG key; the same per-episode keys (initial weights) are used for every lr.
      num_classes: number of classes.
      max_extensions: how many rates beyond the grid's edges may be added (0: the grid only).

    Returns:
      an :class:`LrSearch`.
    """
    chex.assert_rank(xs, 3)
    chex.assert_rank(labels, 2)
    chex.assert_equal_shape_prefix((xs, labels), 2)
    if len(lrs) == 0:
        raise ValueError("tune_lr needs at least one learning rate")
    if not all(np.isfinite(x) and x > 0 for x in lrs):
        raise ValueError(f"learning rates must be finite and > 0, got {list(lrs)}")
    if max_extensions < 0:
        raise ValueError(f"max_extensions must be >= 0, got {max_extensions}")
    task = TaskSpec(input_dim=xs.shape[-1], num_classes=num_classes)

    @jax.jit
    def mean_loss(lr):
        learner = make_learner(lr)
        meta_params = learner.meta_init(key, task)
        return batch_episode_loss(learner, meta_params, xs, labels, key, num_classes)

    def loss_of(lr: float) -> float:
        value = float(mean_loss(jnp.asarray(lr, jnp.float32)))
        return value if np.isfinite(value) else np.inf

    grid = sorted({float(x) for x in lrs})
    tried = {lr: loss_of(lr) for lr in grid}
    ratio = _step_ratio(grid)
    for _ in range(max_extensions):
        order = sorted(tried)
        best = min(order, key=lambda x: tried[x])  # the smallest rate among ties
        if len(order) > 1 and best not in (order[0], order[-1]):
            break
        # on an edge (a lone rate counts as the lower one): one grid step beyond it
        new = best / ratio if best == order[0] else best * ratio
        tried[new] = loss_of(new)
    order = sorted(tried)
    losses = np.array([tried[x] for x in order])
    i = int(np.argmin(losses))
    return LrSearch(float(order[i]), 0 < i < len(order) - 1, tuple(order), losses)
