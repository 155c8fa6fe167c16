"""A meta-learned local synaptic learning rule.

Bengio, Bengio & Cloutier (IJCNN 1991), "Learning a synaptic learning rule", and
Bengio, Bengio, Cloutier & Gecsei (1992), "On the optimization of a synaptic learning
rule": every synapse ``w_ij`` (from pre-synaptic unit ``j`` to post-synaptic unit
``i``) of a small network changes by a parametric function of quantities local to
it, with the rule's parameters ``theta`` shared by all synapses and meta-learned::

    dw_ij = theta . [1, pre_j, post_i, mod_i, pre_j post_i, pre_j mod_i,
                     post_i mod_i, pre_j post_i mod_i, w_ij]

i.e. all products of the pre-synaptic activity, the post-synaptic activity and a
modulatory signal, plus a weight-decay term (the paper's rule is of this polynomial
form). Biases are synapses from a constant pre-synaptic unit ``1``.

At step ``t`` the network is re-run on the stored ``x_{t-1}`` with its current
weights to obtain ``pre``/``post`` (post = ``tanh`` activity of hidden units,
``softmax`` of the output units), the rule is applied once (skipped at ``t = 0``,
where there is no feedback), and the network predicts on ``x_t``. Modulatory signals:

- output layer: ``mod = -feedback.error`` of that output unit (``onehot - softmax``);
- hidden layer (``hidden=(H,)``): ``modulation='backprop'`` sends the output signal
  back through the current output weights, ``mod_h = (W_out^T mod) * tanh'``
  (a locally back-propagated error); ``modulation='feedback_alignment'`` uses a fixed
  random matrix ``B`` instead of ``W_out^T`` (Lillicrap et al. 2016), drawn from the
  episode key.

With ``theta = lr`` on the ``pre * mod`` feature and zero elsewhere the rule is
exactly online SGD (``modulation='backprop'``); meta-learning starts from a small
random ``theta`` instead. The weights are drawn from the episode key; only ``theta``
(one vector shared by all layers, or one per layer with ``per_layer=True``) is
meta-learned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from vsml_jax.learners.base import Feedback, Learner, PyTree, TaskSpec
from vsml_jax.learners.sgd import has_feedback, select_tree

NUM_FEATURES = 9
FEATURES = ("1", "pre", "post", "mod", "pre*post", "pre*mod", "post*mod", "pre*post*mod", "w")
_MODULATIONS = ("backprop", "feedback_alignment")


def rule_update(
    theta: jax.Array, pre: jax.Array, post: jax.Array, mod: jax.Array, w: jax.Array
) -> jax.Array:
    """``dw [out, in]`` of the polynomial rule for one layer (features in ``FEATURES`` order)."""
    chex.assert_shape(theta, (NUM_FEATURES,))
    chex.assert_shape(w, (post.shape[0], pre.shape[0]))
    # Group the terms by what multiplies pre_j: dw_ij = a_i + b_i pre_j + theta_8 w_ij.
    a = theta[0] + theta[2] * post + theta[3] * mod + theta[6] * post * mod
    b = theta[1] + theta[4] * post + theta[5] * mod + theta[7] * post * mod
    return a[:, None] + b[:, None] * pre[None, :] + theta[8] * w


def _with_bias(x: jax.Array) -> jax.Array:
    return jnp.concatenate([x, jnp.ones((1,), x.dtype)])


def _forward(weights: Sequence[jax.Array], x: jax.Array):
    """Returns the pre-synaptic inputs (with bias unit) and post activities of every layer."""
    pres, posts = [], []
    h = x
    for i, w in enumerate(weights):
        pre = _with_bias(h)
        a = w @ pre
        h = a if i == len(weights) - 1 else jnp.tanh(a)
        pres.append(pre)
        posts.append(h)
    return pres, posts  # posts[-1] are the logits


class SynapticRuleState(NamedTuple):
    weights: tuple  # per layer [out, in + 1] (last column: bias)
    feedback_matrix: jax.Array  # B [hidden, C] (feedback alignment) or an unused [0, C]
    prev_x: jax.Array  # [D]


def synaptic_rule(
    hidden: Sequence[int] = (),
    modulation: str = "backprop",
    per_layer: bool = False,
    init_scale: float = 0.01,
) -> Learner:
    """Network with 1 (``hidden=()``) or 2 (``hidden=(H,)``) layers trained by a learned rule.

    Args:
      hidden: ``()`` or ``(H,)``.
      modulation: hidden-layer modulatory signal, ``'backprop'`` or ``'feedback_alignment'``.
      per_layer: one ``theta`` per layer instead of one shared by all synapses.
      init_scale: std of the random initial ``theta``.
    """
    hidden = tuple(int(h) for h in hidden)
    if len(hidden) > 1:
        raise ValueError(f"synaptic_rule supports at most one hidden layer, got {hidden}")
    if modulation not in _MODULATIONS:
        raise ValueError(f"modulation must be one of {_MODULATIONS}, got {modulation!r}")
    num_layers = len(hidden) + 1

    def meta_init(key: jax.Array, task: TaskSpec) -> PyTree:
        del task
        shape = (num_layers, NUM_FEATURES) if per_layer else (NUM_FEATURES,)
        return {"theta": init_scale * jax.random.normal(key, shape)}

    def init(meta_params: PyTree, task: TaskSpec, key: jax.Array) -> SynapticRuleState:
        del meta_params
        sizes = (task.input_dim, *hidden, task.num_classes)
        keys = jax.random.split(key, num_layers + 1)
        weights = tuple(
            jnp.concatenate(
                [jax.random.normal(k, (n_out, n_in)) / jnp.sqrt(n_in), jnp.zeros((n_out, 1))],
                axis=1,
            )
            for k, n_in, n_out in zip(keys[:-1], sizes[:-1], sizes[1:], strict=True)
        )
        fb_rows = hidden[0] if hidden and modulation == "feedback_alignment" else 0
        feedback_matrix = jax.random.normal(keys[-1], (fb_rows, task.num_classes))
        feedback_matrix = feedback_matrix / jnp.sqrt(task.num_classes)
        return SynapticRuleState(
            weights, feedback_matrix, jnp.zeros((task.input_dim,), jnp.float32)
        )

    def theta_of(meta_params, layer):
        theta = meta_params["theta"]
        return theta[layer] if per_layer else theta

    def step(meta_params, state: SynapticRuleState, x: jax.Array, feedback: Feedback):
        chex.assert_shape(x, state.prev_x.shape)
        weights = state.weights
        pres, posts = _forward(weights, state.prev_x)
        # Output layer: post = softmax output, mod = -dL/dlogits of the previous example.
        mods = [-feedback.error]
        post_acts = [jax.nn.softmax(posts[-1])]
        if hidden:
            back = weights[-1][:, :-1].T if modulation == "backprop" else state.feedback_matrix
            mods.insert(0, (back @ mods[-1]) * (1.0 - posts[0] ** 2))
            post_acts.insert(0, posts[0])
        new_weights = tuple(
            w + rule_update(theta_of(meta_params, i), pres[i], post_acts[i], mods[i], w)
            for i, w in enumerate(weights)
        )
        weights = select_tree(has_feedback(feedback), new_weights, weights)
        logits = _forward(weights, x)[1][-1]
        return state._replace(weights=weights, prev_x=x.astype(state.prev_x.dtype)), logits

    return Learner(name="synaptic_rule", meta_init=meta_init, init=init, step=step)
