"""MAML-style meta-learned initialisation for online SGD.

Finn, Abbeel & Levine (ICML 2017), "Model-agnostic meta-learning for fast adaptation
of deep networks", with a meta-learned (log) learning rate as in Meta-SGD (Li et al.
2017, here a single scalar). The learner is the online SGD learner of
:mod:`vsml_jax.learners.sgd` (same MLP, same one-step-per-example update from the
previous example), except that its initial weights, and optionally its learning
rate, are the meta-parameters instead of being drawn from the key / fixed. The
meta-gradient through the online inner updates is exact by default
(second-order); ``first_order=True`` applies ``stop_gradient`` to the inner
gradients (first-order MAML).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

from vsml_jax.learners.base import Learner
from vsml_jax.learners.sgd import init_mlp_params, make_online_learner


def maml(
    hidden: Sequence[int] = (160,),
    lr: float = 0.1,
    learn_lr: bool = True,
    first_order: bool = False,
) -> Learner:
    """Online SGD from a meta-learned initialisation.

    Args:
      hidden: MLP hidden widths (``()``: linear classifier).
      lr: the (initial, if ``learn_lr``) inner learning rate.
      learn_lr: meta-learn ``log_lr`` (meta-parameter ``'log_lr'``) as well.
      first_order: first-order MAML (no second derivatives through inner gradients).

    Meta-parameters: ``{'params': MLP weights[, 'log_lr': scalar]}``.
    """
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    hidden = tuple(int(h) for h in hidden)

    def meta_init(key, task):
        meta_params = {"params": init_mlp_params(key, task, hidden)}
        if learn_lr:
            meta_params["log_lr"] = jnp.asarray(jnp.log(lr), jnp.float32)
        return meta_params

    def make_optimizer(meta_params):
        return optax.sgd(jnp.exp(meta_params["log_lr"]) if learn_lr else lr)

    return make_online_learner(
        name="maml",
        hidden=hidden,
        meta_init=jax.jit(meta_init, static_argnums=1),  # Flax init is slow op by op
        init_params=lambda meta_params, task, key: meta_params["params"],
        make_optimizer=make_optimizer,
        first_order=first_order,
    )
