"""The learning-algorithm (LA) protocol shared by every learner.

A learner is a small named tuple of pure functions over pytrees, in the spirit of
``optax.GradientTransformation``:

- ``meta_init(key, task) -> meta_params``: the meta-parameters (what ES or
  meta-gradients optimise). May be an empty dict for hand-designed learners.
- ``init(meta_params, task, key) -> state``: the inner (learned) state at the
  start of an episode, e.g. VSML's per-cell LSTM states or an MLP's weights.
- ``step(meta_params, state, x, feedback) -> (state, logits)``: consume one
  example ``x`` (shape ``[task.input_dim]``) together with the *previous* step's
  feedback, and emit logits for ``x`` (shape ``[task.num_classes]``).

Learning happens only inside ``step``: the error of step ``t`` reaches the
learner at step ``t + 1`` as ``feedback``, exactly as in VSML's online
classification protocol. The episode runner (:mod:`vsml_jax.episode`) is the only
code that computes losses; learners never see the current label before they
predict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

PyTree = Any


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Static shape information of a task family (hashable, usable as a jit static arg)."""

    input_dim: int
    num_classes: int

    def __post_init__(self):
        if self.input_dim < 1 or self.num_classes < 2:
            raise ValueError(f"TaskSpec needs input_dim >= 1 and num_classes >= 2, got {self}")


class Feedback(NamedTuple):
    """What a learner is told about its previous prediction.

    error: ``[C]`` the gradient of the previous step's cross-entropy with respect to
      its logits, ``softmax(logits) - onehot(label)``; zeros at the first step.
    label: ``[C]`` the previous step's one-hot label; zeros at the first step.
    """

    error: jax.Array
    label: jax.Array

    @classmethod
    def zeros(cls, num_classes: int, dtype=jnp.float32) -> Feedback:
        z = jnp.zeros((num_classes,), dtype)
        return cls(error=z, label=z)


MetaInitFn = Callable[[jax.Array, TaskSpec], PyTree]
InitFn = Callable[[PyTree, TaskSpec, jax.Array], PyTree]
StepFn = Callable[[PyTree, PyTree, jax.Array, Feedback], tuple[PyTree, jax.Array]]


class Learner(NamedTuple):
    """A learning algorithm: three pure functions and a name."""

    name: str
    meta_init: MetaInitFn
    init: InitFn
    step: StepFn


def first_classes(learner: Learner, own: int, num_classes: int) -> Learner:
    """``learner``, built for ``own`` outputs, predicting among its first ``num_classes``.

    Its logits are cut to ``num_classes`` (so every prediction is one of the task's
    classes) and the feedback, which the episode computes over those classes, reaches it
    zero-padded to ``own`` (the absent classes get no error and no label). For learners
    whose output count is fixed by their meta-parameters; VSML runs on any count as it is.
    """
    if num_classes > own:
        raise ValueError(f"learner {learner.name!r} has {own} outputs, fewer than {num_classes}")
    if num_classes == own:
        return learner

    def widen(task: TaskSpec) -> TaskSpec:
        return dataclasses.replace(task, num_classes=own)

    def pad(v):
        return jnp.pad(v, [(0, 0)] * (v.ndim - 1) + [(0, own - num_classes)])

    def step(meta_params, state, x, feedback):
        state, logits = learner.step(meta_params, state, x, Feedback(*map(pad, feedback)))
        return state, logits[..., :num_classes]

    return Learner(
        learner.name,
        lambda key, task: learner.meta_init(key, widen(task)),
        lambda meta_params, task, key: learner.init(meta_params, widen(task), key),
        step,
    )
