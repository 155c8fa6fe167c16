"""VSML as a learner (Kirsch & Schmidhuber, "Meta Learning Backpropagation And
Improving It", NeurIPS 2021).

Every weight of a dense network is replaced by a tiny LSTM; all LSTMs share the
meta-parameters V_M (``meta_params``), and each keeps its own state V_L (the
learner ``state``). Learning happens purely in the forward dynamics: the error
is fed back as a message and the cells change their own state.
"""

from __future__ import annotations

import jax

from vsml_jax.learners.base import Feedback, Learner, TaskSpec
from vsml_jax.vsml.network import (
    NetworkConfig,
    init_network_params,
    init_network_state,
    layer_sizes,
    network_step,
)


def vsml(cfg: NetworkConfig = NetworkConfig()) -> Learner:
    """A VSML learner with architecture and dynamics ``cfg``."""

    def meta_init(key: jax.Array, task: TaskSpec):
        num_layers = len(layer_sizes(cfg, task.input_dim, task.num_classes)) - 1
        return init_network_params(key, cfg, num_layers)

    def init(meta_params, task: TaskSpec, key: jax.Array):
        del meta_params
        return init_network_state(key, cfg, task.input_dim, task.num_classes)

    def step(meta_params, state, x: jax.Array, feedback: Feedback):
        return network_step(cfg, meta_params, state, x, feedback.error, feedback.label)

    return Learner(name="vsml", meta_init=meta_init, init=init, step=step)
