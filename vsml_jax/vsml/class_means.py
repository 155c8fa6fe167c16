"""The nearest class mean written as VSML dynamics: a class-mean memory for spare units.

The cloned backprop (:mod:`vsml_jax.vsml.backprop`) scores a class by ``tanh(x) . w``,
with ``w`` a sum of error-weighted inputs. The nearest class mean scores it by
``2 t . m_b - |m_b|^2`` with ``m_b`` the mean of class ``b``'s examples. Its norm term,
with the ``1/n`` of a mean, is what wins the first steps on Fashion-MNIST (docs/RESULTS.md
§4). :func:`add_class_means` writes that memory into unused units of a V_M. Cell (a, b)
then also keeps ``m_ab``, the mean of ``t_a = tanh(k x_a)`` over class ``b``'s examples,
and adds ``gamma * (2 t_a m_ab - m_ab^2)`` to its forward message. So output ``b`` gains
``gamma`` times NCM's score on ``tanh(k x)``, divided by the input count ``A`` by the mean
reduction.

**The label.** The memory reads the previous example's one-hot label on backward channel
1, so the network needs ``feed_label=True``. The label and the input it belongs to are both
present only in the step's top-down tick. An error-gated memory can't tell the label
apart from a confident prediction.

**The units** (defaults fit :func:`backprop_cell`'s layout with ``hidden = 16``,
``num_random = 8``). All gates open only on the label, so every other tick leaves the
memory as it is (saturated gates at ``+-gate``).

- A counter ``N`` (starts at 0, so it must not be a random unit). It holds
  ``U = beta c_N + ln(eps)``. Per example of its class, ``c_N`` grows by
  ``(cap / beta) sigmoid(-ln(cap) - U)``, so ``e^U`` grows by about 1 from ``eps``: its
  input gate inhibits itself, exponentially in ``c_N``.
- Four mean units ``M0..M3`` (one initial value: all non-random, or one copy group of
  random units). Their cell input is ``tanh(k x)``, with forget gate ``sigmoid(U)`` and
  input gate ``sigmoid(-U)``, about ``1 - 1/n`` and ``1/n`` at the ``n``-th example (within
  10% for ``n <= 200``). So ``c_M`` is the running mean; the first example replaces all
  but 0.8% of the unit's small initial value.
- Read-out by gates, as in :func:`backprop_cell`:
  - ``M1``/``M2`` have output gates ``sigmoid(+-2 k x)``, so ``h1 - h2 = t tanh(m)``.
  - ``M0`` has output gate 1, so ``h0 = tanh(m)``.
  - ``M3``'s output gate is ``sigmoid(2 q h0)``, so ``h3 - h0/2 = tanh(q h0) tanh(m) / 2 ~
    q tanh(m)^2 / 2``.
  - The forward head weighs these to ``gamma (2 t tanh(m) - tanh(m)^2)``: NCM's score
    with the prototype ``tanh(m)``. That is ``m`` within 24% at ``|m| = 1``, less for the
    usual ``|m| < 0.5``.

The backward heads are untouched, so the memory changes what the layer predicts, never
the messages its backprop sends down. With one layer (784 -> 10) that is NCM added to
backprop's logits. In a deep network the hidden layers get no label, so their memory keeps
its small initial value.

``gamma`` is the score's inverse temperature. Beating NCM's early accuracy on
Fashion-MNIST takes ``gamma >= 100``, and the logits are then badly calibrated: a wrong
prediction costs tens of nats. docs/RESULTS.md §4 has the
accuracy and the online loss for each ``gamma``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from vsml_jax.vsml.cell import CellConfig, CellParams


def add_class_means(
    params: CellParams,
    cfg: CellConfig,
    gamma: float,
    feature_gain: float = 1.0,
    mean_units: tuple[int, int, int, int] = (4, 5, 6, 7),
    count_unit: int = 13,
    beta: float = 100.0,
    cap: float = 5.0,
    eps: float = 0.008,
    square_gain: float = 0.2,
    gate: float = 30.0,
) -> CellParams:
    """``params`` with a class-mean memory in ``mean_units`` and ``count_unit`` (see the
    module docstring), adding ``gamma * (2 t m - m^2)`` with ``t = tanh(feature_gain x)``
    to forward channel 0. The network must run with ``feed_label=True``.

    ``beta`` scales the counter (``c_N = (U - ln eps) / beta`` stays below 0.11 for 300
    examples of a class, where ``tanh`` is linear to 0.4%). ``cap`` and ``eps`` were
    chosen so that ``sigmoid(-U)`` is within 10% of ``1/n`` for ``n = 1..200``.
    ``square_gain`` is ``q`` of the squared term.

    Raises:
        ValueError: the units are not free (a nonzero weight into or out of them), are
            not distinct, the counter is a random unit, the mean units do not share
            one initial value, or ``cfg.message < 2`` (no channel for the label).
    """
    H, m, R, k = cfg.hidden, cfg.message, cfg.num_random, cfg.random_cell_copies
    units = (*mean_units, count_unit)
    if m < 2:
        raise ValueError(
            f"add_class_means reads the label on channel 1: needs message >= 2, not {m}"
        )
    if len(set(units)) != 5 or not all(0 <= u < H for u in units):
        raise ValueError(f"add_class_means needs 5 distinct units below hidden={H}, got {units}")
    if count_unit < R:
        raise ValueError(
            f"count_unit {count_unit} starts at a random value (num_random={R}); pick a unit >= {R}"
        )
    groups = {u // k if u < R else -1 for u in mean_units}
    if len(groups) != 1:
        raise ValueError(
            f"mean_units {mean_units} start at different values; pick units >= {R} or one "
            f"group of {k} random copies"
        )
    w_in = np.array(params.w_in).reshape(2 * m, 4, H)
    w_h = np.array(params.w_h).reshape(H, 4, H)
    b = np.array(params.b).reshape(4, H)
    w_fwd, w_bwd = np.array(params.w_fwd), np.array(params.w_bwd)

    def in_use(u):  # a weight into or out of unit u
        return any(a.any() for a in (w_in[:, :, u], w_h[:, :, u], w_h[u], w_fwd[u], w_bwd[u]))

    used = [u for u in units if in_use(u)]
    if used:
        raise ValueError(f"units {used} are in use in this V_M (nonzero weights); pick free units")
    label, n, u_0 = m + 1, count_unit, float(np.log(eps))
    # the counter: on the label, input gate sigmoid(-ln cap - U), cell input cap / beta;
    # it never forgets
    w_in[label, 0, n], b[0, n], w_h[n, 0, n] = gate, -gate - np.log(cap) - u_0, -beta
    b[1, n], b[2, n], b[3, n] = gate, np.arctanh(cap / beta), gate
    m0, m1, m2, m3 = mean_units
    for u in mean_units:  # on the label: input gate sigmoid(-U), forget gate sigmoid(U)
        w_in[label, 0, u], b[0, u], w_h[n, 0, u] = gate, -gate - u_0, -beta
        w_in[label, 1, u], b[1, u], w_h[n, 1, u] = -gate, gate + u_0, beta
        w_in[0, 2, u], b[2, u] = feature_gain, 0.0
        b[3, u] = 0.0
    b[3, m0] = gate
    w_in[0, 3, m1], w_in[0, 3, m2] = 2.0 * feature_gain, -2.0 * feature_gain
    w_h[m0, 3, m3] = 2.0 * square_gain
    w_fwd[m1, 0], w_fwd[m2, 0] = 2.0 * gamma, -2.0 * gamma
    w_fwd[m3, 0], w_fwd[m0, 0] = -2.0 * gamma / square_gain, gamma / square_gain
    return params.replace(
        w_in=jnp.asarray(w_in.reshape(2 * m, 4 * H)),
        w_h=jnp.asarray(w_h.reshape(H, 4 * H)),
        b=jnp.asarray(b.reshape(4 * H)),
        w_fwd=jnp.asarray(w_fwd),
    )
