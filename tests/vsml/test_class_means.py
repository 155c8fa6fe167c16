"""The nearest class mean written as VSML dynamics (vsml/class_means.py)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml_jax.vsml.backprop import backprop_cell
from vsml_jax.vsml.cell import CellConfig
from vsml_jax.vsml.class_means import add_class_means
from vsml_jax.vsml.network import NetworkConfig, init_network_state, network_step

A, C, T, GAMMA = 6, 3, 60, 50.0


def _net(feed_label=True):
    return NetworkConfig(
        cell=CellConfig(random_cell_copies=4, random_cell_std=0.0025),
        num_micro_ticks=1,
        output_channel=0,
        backward_pass=True,
        forward_sweep_feedback=False,
        feed_label=feed_label,
        output_scale=1e6,  # no squash: the logits are the forward messages' means
    )


@jax.jit
def _stream():
    """Inputs, labels and a given (not predicted) error for each step (one compiled program)."""
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    labels = jax.random.randint(k[0], (T,), 0, C)
    xs = 1.5 * jax.random.normal(k[1], (C, A))[labels] + jax.random.normal(k[2], (T, A))
    onehot = jax.nn.one_hot(labels, C)
    errors = jax.nn.softmax(jax.random.normal(k[3], (T, C))) - onehot
    return xs, labels, errors, onehot


def _initial_means(net):
    """The mean units' initial value r ``[C, A]`` (one copy group of random units)."""
    return np.asarray(init_network_state(jax.random.PRNGKey(1), net, A, C).cells[0].c[4])


def _score(t, m):
    """gamma times NCM's score of ``t`` ``[A]`` against prototypes ``m`` ``[C, A]``, per input."""
    return GAMMA * np.mean(2 * t * m - m * m, axis=-1)


@functools.partial(jax.jit, static_argnums=0)
def _logits(net, params, xs, errors, onehot):
    """Logits of the network driven by the given feedback (the previous step's)."""
    state = init_network_state(jax.random.PRNGKey(1), net, A, C)
    zero = jnp.zeros((1, C))
    errors, labels = jnp.concatenate([zero, errors[:-1]]), jnp.concatenate([zero, onehot[:-1]])

    def step(state, inp):
        return network_step(net, (params,), state, *inp)

    return jax.lax.scan(step, state, (xs, errors, labels))[1]


def test_the_memory_adds_ncms_score_on_tanh_x_to_the_logits():
    """With the same feedback, the logits gain gamma * mean_a (2 t_a m_ab - m_ab^2) with
    m_ab the mean of t_a = tanh(x_a) over class b's earlier examples (within the
    counter's 1/n and tanh(m) approximations)."""
    net = _net()
    base, _ = backprop_cell(net.cell)
    xs, labels, errors, onehot = _stream()
    plain = _logits(net, base, xs, errors, onehot)
    both = _logits(net, add_class_means(base, net.cell, GAMMA), xs, errors, onehot)
    t, r, labels = np.tanh(np.asarray(xs)), _initial_means(net), np.asarray(labels)
    want = np.zeros((T, C))
    for step in range(T):
        m = np.tanh(r)  # a class not seen yet keeps the initial value
        for b in range(C):
            seen = t[:step][labels[:step] == b]
            if len(seen):
                m[b] = np.tanh(seen.mean(0))
        want[step] = _score(t[step], m)
    got = np.asarray(both - plain)
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()  # measured: 0.024
    # the score ranks the classes as NCM on tanh(x) does, in nearly every step
    seen_all = (np.cumsum(np.asarray(onehot), 0) > 0).all(1)[:-1]
    agree = got[1:].argmax(1) == want[1:].argmax(1)
    assert agree[seen_all].mean() > 0.95


def test_without_the_label_the_memory_keeps_its_initial_value():
    """feed_label=False: no gate opens, the mean units keep their small initial value r
    and the logits gain only its score."""
    net = _net(feed_label=False)
    base, _ = backprop_cell(net.cell)
    xs, _, errors, onehot = _stream()
    plain = _logits(net, base, xs, errors, onehot)
    both = _logits(net, add_class_means(base, net.cell, GAMMA), xs, errors, onehot)
    want = np.stack([_score(t, np.tanh(_initial_means(net))) for t in np.tanh(np.asarray(xs))])
    # (the first step's forward tick has no h of M0 yet: 0.2% off there)
    np.testing.assert_allclose(both - plain, want, atol=3e-3 * np.abs(want).max())


def test_bad_units_are_refused_in_one_line():
    cell = _net().cell
    base, _ = backprop_cell(cell)
    with pytest.raises(ValueError, match="in use"):
        add_class_means(base, cell, 1.0, count_unit=8)  # unit 8 holds the weight
    with pytest.raises(ValueError, match="random value"):
        add_class_means(base, cell, 1.0, mean_units=(13, 14, 15, 12), count_unit=3)
    with pytest.raises(ValueError, match="different values"):
        add_class_means(base, cell, 1.0, mean_units=(6, 7, 13, 14), count_unit=15)
    with pytest.raises(ValueError, match="distinct"):
        add_class_means(base, cell, 1.0, mean_units=(4, 5, 6, 6))
    with pytest.raises(ValueError, match="message >= 2"):
        small = CellConfig(message=1, random_cell_copies=4)
        add_class_means(backprop_cell(small)[0], small, 1.0)
