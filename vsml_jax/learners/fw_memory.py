"""Fast Weight Memory (FWM) as a black-box meta-learner.

Schlag, Munkhdalai & Schmidhuber (ICLR 2021), "Learning associative inference using
fast weight memory"; the "FWM" baseline of the VSML paper (Kirsch & Schmidhuber 2021).

An LSTM reads ``concat[x_t, feedback.error, feedback.label]`` at every step. Its
output ``h_t`` writes one association into a third-order fast-weight tensor
``F [s, r, t]`` (zero at the start of each episode) and then reads from it:

- write: ``e1 = tanh(.)`` [s], ``e2 = tanh(.)`` [r], ``v = tanh(.)`` [t],
  ``beta = sigmoid(. + 1)``, all linear in ``h_t``. The composite key
  ``k = e1 outer e2`` is L2-normalised and the value stored under it is replaced by
  the delta rule ``F <- F + beta * k outer (v - k . F)``; afterwards ``F`` is divided
  by ``max(1, ||F||)`` (as in the authors' code).
- read (``n_reads`` hops): ``n_0 = tanh(.)`` [s] and ``e_i = tanh(.)`` [r] from
  ``h_t``; ``n_i = LayerNorm((n_{i-1} outer e_i) . F)``; for the tensor shape this
  needs ``s == r == t == memory_size``.
- output: ``logits = Dense(h_t + Dense(n_{n_reads}))``.

Simplifications with respect to the paper: a single LSTM layer, one write per step,
no parameters in the read LayerNorm, and the L2 normalisation of the composite write
key (the paper normalises ``F`` only), which keeps the delta rule's update contractive.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from vsml_jax.learners.base import Feedback, Learner, PyTree, TaskSpec


def _layer_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    x = x - x.mean()
    return x / jnp.sqrt(jnp.mean(x * x) + eps)


def fwm_write(memory, e1, e2, value, beta):
    """Delta-rule write of ``value`` under the normalised key ``e1 outer e2``; norm clipped."""
    key = jnp.outer(e1, e2)
    key = key / jnp.sqrt(jnp.sum(key * key) + 1e-6)
    old = jnp.einsum("sr,srt->t", key, memory)
    memory = memory + beta * jnp.einsum("sr,t->srt", key, value - old)
    return memory / jnp.maximum(1.0, jnp.sqrt(jnp.sum(memory * memory)))


def fwm_read(memory, query, hops):
    """``n_i = LN((n_{i-1} outer e_i) . F)`` for every ``e_i`` in ``hops [n_reads, r]``."""
    n = query
    for e in hops:  # a few static hops
        n = _layer_norm(jnp.einsum("s,r,srt->t", n, e, memory))
    return n


class _FWMCell(nn.Module):
    hidden: int
    memory_size: int
    n_reads: int
    num_classes: int

    @nn.compact
    def __call__(self, carry, memory, inputs):
        m = self.memory_size
        carry, h = nn.OptimizedLSTMCell(self.hidden, name="lstm")(carry, inputs)
        w = nn.Dense(3 * m + 1, name="write")(h)
        e1, e2, value = jnp.split(jnp.tanh(w[:-1]), 3)
        beta = jax.nn.sigmoid(w[-1] + 1.0)
        memory = fwm_write(memory, e1, e2, value, beta)
        r = jnp.tanh(nn.Dense((1 + self.n_reads) * m, name="read")(h))
        read = fwm_read(memory, r[:m], r[m:].reshape(self.n_reads, m))
        out = h + nn.Dense(self.hidden, kernel_init=nn.initializers.zeros, name="read_proj")(read)
        return carry, memory, nn.Dense(self.num_classes, name="head")(out)


class FWMState(NamedTuple):
    lstm: tuple[jax.Array, jax.Array]  # (c, h) [hidden]
    memory: jax.Array  # F [m, m, m]


def fw_memory(hidden: int = 128, memory_size: int = 16, n_reads: int = 3) -> Learner:
    """FWM learner: LSTM (``hidden`` units) + fast-weight tensor ``[memory_size]^3``.

    Args:
      hidden: LSTM width.
      memory_size: ``s = r = t``, the size of each axis of the memory tensor.
      n_reads: number of read hops (``N_r`` in the paper).
    """
    if n_reads < 1:
        raise ValueError(f"n_reads must be >= 1, got {n_reads}")

    def cell(task: TaskSpec) -> _FWMCell:
        return _FWMCell(hidden, memory_size, n_reads, task.num_classes)

    def zero_state() -> FWMState:
        z = jnp.zeros((hidden,), jnp.float32)
        return FWMState((z, z), jnp.zeros((memory_size,) * 3, jnp.float32))

    def meta_init(key: jax.Array, task: TaskSpec) -> PyTree:
        inputs = jnp.zeros((task.input_dim + 2 * task.num_classes,), jnp.float32)
        state = zero_state()
        return cell(task).init(key, state.lstm, state.memory, inputs)["params"]

    def init(meta_params: PyTree, task: TaskSpec, key: jax.Array) -> FWMState:
        del meta_params, task, key
        return zero_state()

    def step(meta_params: PyTree, state: FWMState, x: jax.Array, feedback: Feedback):
        chex.assert_rank(x, 1)
        task = TaskSpec(input_dim=x.shape[-1], num_classes=feedback.label.shape[-1])
        inputs = jnp.concatenate([x, feedback.error, feedback.label])
        lstm, memory, logits = cell(task).apply(
            {"params": meta_params}, state.lstm, state.memory, inputs
        )
        return FWMState(lstm, memory), logits

    # meta_init is jitted: un-jitted Flax initialisation dispatches (and compiles) op by op.
    return Learner(
        name="fw_memory", meta_init=jax.jit(meta_init, static_argnums=1), init=init, step=step
    )
