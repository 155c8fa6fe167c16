"""Hebbian fast weights with meta-learned plasticity ("differentiable plasticity").

A linear classifier whose effective weights are slow weights plus a plastic Hebbian
trace, following Miconi, Clune & Stanley (ICML 2018, "Differentiable plasticity");
the "Hebbian" baseline of the VSML paper (Kirsch & Schmidhuber 2021)::

    logits_t = (W + coeff * F_t) x_t + b
    F_t = (1 - decay) F_{t-1} + rate * post_{t-1} outer pre_{t-1}          (rule='hebb')
    F_t = (1 - decay) F_{t-1} + rate * post (pre - post * F_{t-1})         (rule='oja')

with the pre-synaptic activity ``pre = x_{t-1}`` (kept in the state) and the
post-synaptic signal driven by the feedback of step ``t - 1``:

- ``post='error'`` (default): ``post = -feedback.error = onehot - softmax``, the
  teacher-forced error signal; with ``rule='hebb'`` and ``decay = 0`` this is the
  delta rule, i.e. online SGD of the plastic weights with per-synapse rates
  ``rate * coeff``.
- ``post='label'``: ``post = feedback.label``, a purely Hebbian, teacher-clamped
  output (``F x`` then becomes a decayed sum of label-weighted input similarities).

``F`` starts at zero in every episode. The meta-parameters are ``W [C, D]``,
``b [C]``, the per-synapse plasticity coefficients ``coeff [C, D]``, the scalar
``rate`` and ``decay = sigmoid(decay_logit)``.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from vsml_jax.learners.base import Feedback, Learner, PyTree, TaskSpec

_RULES = ("hebb", "oja")
_POSTS = ("error", "label")


class HebbianState(NamedTuple):
    fast: jax.Array  # F [C, D]
    prev_x: jax.Array  # [D]


def hebbian(
    rule: str = "hebb",
    post: str = "error",
    init_rate: float = 0.1,
    init_coeff: float = 1.0,
    init_decay: float = 0.01,
) -> Learner:
    """Hebbian fast-weight learner.

    Args:
      rule: ``'hebb'`` (plain Hebbian outer product) or ``'oja'`` (Oja's rule).
      post: post-synaptic signal, ``'error'`` (``-feedback.error``) or ``'label'``.
      init_rate, init_coeff, init_decay: initial values of the meta-parameters.
    """
    if rule not in _RULES:
        raise ValueError(f"rule must be one of {_RULES}, got {rule!r}")
    if post not in _POSTS:
        raise ValueError(f"post must be one of {_POSTS}, got {post!r}")
    if not 0.0 < init_decay < 1.0:
        raise ValueError(f"init_decay must be in (0, 1), got {init_decay}")

    def meta_init(key: jax.Array, task: TaskSpec) -> PyTree:
        shape = (task.num_classes, task.input_dim)
        return {
            "W": jax.random.normal(key, shape) / jnp.sqrt(task.input_dim),
            "b": jnp.zeros((task.num_classes,)),
            "coeff": jnp.full(shape, init_coeff, jnp.float32),
            "rate": jnp.asarray(init_rate, jnp.float32),
            "decay_logit": jnp.asarray(jnp.log(init_decay / (1.0 - init_decay)), jnp.float32),
        }

    def init(meta_params: PyTree, task: TaskSpec, key: jax.Array) -> HebbianState:
        del key
        chex.assert_shape(meta_params["W"], (task.num_classes, task.input_dim))
        return HebbianState(
            fast=jnp.zeros((task.num_classes, task.input_dim), jnp.float32),
            prev_x=jnp.zeros((task.input_dim,), jnp.float32),
        )

    def step(meta_params: PyTree, state: HebbianState, x: jax.Array, feedback: Feedback):
        chex.assert_shape(x, state.prev_x.shape)
        signal = -feedback.error if post == "error" else feedback.label
        pre = state.prev_x
        if rule == "hebb":
            delta = jnp.outer(signal, pre)
        else:
            delta = signal[:, None] * (pre[None, :] - signal[:, None] * state.fast)
        decay = jax.nn.sigmoid(meta_params["decay_logit"])
        fast = (1.0 - decay) * state.fast + meta_params["rate"] * delta
        weights = meta_params["W"] + meta_params["coeff"] * fast
        logits = weights @ x + meta_params["b"]
        return HebbianState(fast=fast, prev_x=x.astype(pre.dtype)), logits

    return Learner(name="hebbian", meta_init=meta_init, init=init, step=step)
