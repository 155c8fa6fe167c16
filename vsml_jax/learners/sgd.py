"""Hand-designed online gradient descent (SGD and Adam) on an MLP.

The baseline learners of the VSML paper (Kirsch & Schmidhuber, NeurIPS 2021,
"Meta Learning Backpropagation And Improving It", Sec. 4): a standard MLP trained
online, one example at a time, with a hand-designed optimiser (plain SGD, or Adam,
Kingma & Ba 2015, via optax).

At step ``t`` the learner first takes one optimiser step on the loss of the
*previous* example ``(x_{t-1}, y_{t-1})`` (``x_{t-1}`` is kept in the state,
``y_{t-1}`` arrives as ``feedback.label``) and then predicts on ``x_t``. The
gradient is that of the cross-entropy of the recomputed forward pass on
``x_{t-1}`` with the current weights, which equals ``vjp(feedback.error)``
because the weights have not changed since ``x_{t-1}`` was predicted. At ``t = 0``
(all-zero ``feedback.label``) the update is skipped, so Adam's moments and step
count are not touched by a fake zero gradient.

The building blocks (:class:`MLP`, :func:`make_online_learner`) are shared with
:mod:`vsml_jax.learners.maml`, whose initial weights and learning rate are
meta-learned instead of drawn/fixed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from vsml_jax.learners.base import Feedback, Learner, PyTree, TaskSpec


class MLP(nn.Module):
    """ReLU MLP ``input -> hidden... -> num_classes`` (He init, LeCun init for the head)."""

    hidden: Sequence[int]
    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.hidden):
            x = nn.Dense(width, kernel_init=nn.initializers.he_normal(), name=f"hidden_{i}")(x)
            x = nn.relu(x)
        return nn.Dense(self.num_classes, name="out")(x)


def init_mlp_params(key: jax.Array, task: TaskSpec, hidden: Sequence[int]) -> PyTree:
    """Fresh MLP weights for ``task`` (a dict of float arrays)."""
    mlp = MLP(hidden=tuple(hidden), num_classes=task.num_classes)
    return mlp.init(key, jnp.zeros((task.input_dim,), jnp.float32))["params"]


def has_feedback(feedback: Feedback) -> jax.Array:
    """``True`` once a previous label exists (``False`` at the first step of an episode)."""
    return jnp.any(feedback.label != 0)


def previous_example_grad(
    apply_fn: Callable[[PyTree, jax.Array], jax.Array],
    params: PyTree,
    prev_x: jax.Array,
    feedback: Feedback,
) -> PyTree:
    """Gradient of the previous example's cross-entropy with respect to ``params``.

    The loss is recomputed from ``prev_x`` and ``feedback.label``; its gradient is zero
    when ``feedback.label`` is all zeros (first step).
    """

    def loss_fn(p):
        return optax.softmax_cross_entropy(apply_fn(p, prev_x), feedback.label)

    return jax.grad(loss_fn)(params)


def select_tree(pred: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
    """Elementwise ``where(pred, on_true, on_false)`` over two pytrees of equal structure."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class OnlineState(NamedTuple):
    """State of an online gradient learner: weights, optimiser state, previous input."""

    params: PyTree
    opt_state: optax.OptState
    prev_x: jax.Array


def make_online_learner(
    name: str,
    hidden: Sequence[int],
    meta_init: Callable[[jax.Array, TaskSpec], PyTree],
    init_params: Callable[[PyTree, TaskSpec, jax.Array], PyTree],
    make_optimizer: Callable[[PyTree], optax.GradientTransformation],
    first_order: bool = False,
) -> Learner:
    """An MLP learner trained online by an optax optimiser.

    Args:
      name: the learner's name.
      hidden: MLP hidden widths (``()`` for a linear model).
      meta_init: ``(key, task) -> meta_params``.
      init_params: ``(meta_params, task, key) -> params``, the episode's initial weights.
      make_optimizer: ``meta_params -> optax.GradientTransformation``; called inside
        ``init`` and ``step`` so that e.g. a meta-learned learning rate can be used.
        Its state structure must not depend on the values of ``meta_params``.
      first_order: ``stop_gradient`` on the inner gradients (first-order MAML).
    """
    hidden = tuple(int(h) for h in hidden)

    def apply_fn(params, x, num_classes):
        return MLP(hidden=hidden, num_classes=num_classes).apply({"params": params}, x)

    def init(meta_params: PyTree, task: TaskSpec, key: jax.Array) -> OnlineState:
        params = init_params(meta_params, task, key)
        opt_state = make_optimizer(meta_params).init(params)
        return OnlineState(params, opt_state, jnp.zeros((task.input_dim,), jnp.float32))

    def step(meta_params: PyTree, state: OnlineState, x: jax.Array, feedback: Feedback):
        num_classes = feedback.label.shape[-1]
        chex.assert_shape(x, state.prev_x.shape)
        chex.assert_rank(feedback.label, 1)
        apply = lambda p, inp: apply_fn(p, inp, num_classes)
        grads = previous_example_grad(apply, state.params, state.prev_x, feedback)
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        optimizer = make_optimizer(meta_params)
        updates, new_opt_state = optimizer.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        learn = has_feedback(feedback)
        params = select_tree(learn, new_params, state.params)
        opt_state = select_tree(learn, new_opt_state, state.opt_state)
        logits = apply(params, x)
        return OnlineState(params, opt_state, x.astype(state.prev_x.dtype)), logits

    return Learner(name=name, meta_init=meta_init, init=init, step=step)


_OPTIMIZERS = {"sgd": optax.sgd, "adam": optax.adam}


def online_optimizer(
    optimizer: str = "sgd", lr: float = 0.1, hidden: Sequence[int] = (160,)
) -> Learner:
    """Online SGD or Adam on an MLP with freshly drawn (He/LeCun) weights; no meta-parameters.

    Args:
      optimizer: ``'sgd'`` or ``'adam'``.
      lr: the learning rate (may be a traced scalar, see :func:`tune_lr`).
      hidden: MLP hidden widths; ``()`` is a linear classifier.
    """
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {optimizer!r}")
    opt = _OPTIMIZERS[optimizer](lr)
    return make_online_learner(
        name=optimizer,
        hidden=hidden,
        meta_init=lambda key, task: {},
        init_params=lambda meta_params, task, key: init_mlp_params(key, task, hidden),
        make_optimizer=lambda meta_params: opt,
    )


def sgd(lr: float = 0.1, hidden: Sequence[int] = (160,)) -> Learner:
    """Online SGD (see :func:`online_optimizer`)."""
    return online_optimizer("sgd", lr=lr, hidden=hidden)


def adam(lr: float = 1e-3, hidden: Sequence[int] = (160,)) -> Learner:
    """Online Adam (see :func:`online_optimizer`)."""
    return online_optimizer("adam", lr=lr, hidden=hidden)
