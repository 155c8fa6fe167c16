"""Online SGD in VSML's grid parametrisation: the learning algorithm cloned into VSML.

The network of :mod:`vsml_jax.vsml.backprop` (explicit weights on the VSML grid, the
same messages and tick schedule as a VSML network with ``backward_pass=True``) as a
learner. It is the reference a cloned VSML is compared with (paper §4.1, Fig. 5):
with ``readout`` it starts every episode from exactly the weights the cloned cells
start from (the read-out of the same initial cell states), so on the same episodes
the two differ only in whether the weight updates are computed explicitly or by the
shared LSTM.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vsml_jax.learners.base import Feedback, Learner, TaskSpec
from vsml_jax.vsml.backprop import GridWeights, backprop_step, init_backprop_state
from vsml_jax.vsml.network import NetworkConfig, init_network_state, layer_sizes


def readout_weights(cells, readout) -> tuple[GridWeights, ...]:
    """``(w, beta) = c @ readout.T`` per layer ``[A, B]``, from VSML cell states
    ``[H, B, A]``."""
    r = jnp.asarray(readout)
    read = lambda c, row: jnp.einsum("hba,h->ab", c, row)  # noqa: E731
    return tuple(GridWeights(w=read(c.c, r[0]), beta=read(c.c, r[1])) for c in cells)


def grid_sgd(
    lr: float = 1.0,
    bias_lr: float = 0.03,
    network: NetworkConfig = NetworkConfig(),
    readout=None,
    init_std: float = 1.0,
) -> Learner:
    """Online SGD of :func:`~vsml_jax.vsml.backprop.backprop_step` with learning rate ``lr``.

    Args:
      lr: the per-cell learning rate (see the scale convention in ``vsml/backprop.py``).
      network: the layer sizes (``hidden_layers``), micro-ticks, output scale and the
        cell config whose initial cell states seed the weights.
      readout: ``[2, hidden]`` rows reading ``w`` and ``beta`` out of a cell state; the
        initial weights are then the read-out of VSML's initial cell states for the same
        key. ``None``: ``w ~ N(0, init_std^2)``, ``beta = 0``.
    """
    if readout is not None:
        readout = np.asarray(readout, np.float32)
        if readout.shape != (2, network.cell.hidden):
            raise ValueError(f"readout must be [2, {network.cell.hidden}], got {readout.shape}")

    def meta_init(key, task: TaskSpec):
        return {}

    def init(meta_params, task: TaskSpec, key):
        del meta_params
        if readout is not None:
            cells = init_network_state(key, network, task.input_dim, task.num_classes).cells
            return init_backprop_state(readout_weights(cells, readout))
        sizes = layer_sizes(network, task.input_dim, task.num_classes)
        keys = jax.random.split(key, len(sizes) - 1)
        layers = tuple(
            GridWeights(
                w=init_std * jax.random.normal(k, (a, b)), beta=jnp.zeros((a, b), jnp.float32)
            )
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])
        )
        return init_backprop_state(layers)

    def step(meta_params, state, x, feedback: Feedback):
        return backprop_step(
            state, x, feedback.error, lr, bias_lr, network.num_micro_ticks, network.output_scale
        )

    return Learner(name="grid_sgd", meta_init=meta_init, init=init, step=step)
