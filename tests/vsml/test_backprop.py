"""The cloning target: backprop written as VSML dynamics (vsml/backprop.py, grid_sgd)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vsml_jax.episode import run_episode
from vsml_jax.learners.base import TaskSpec
from vsml_jax.learners.grid_sgd import grid_sgd
from vsml_jax.vsml.backprop import GridWeights, reference_tick
from vsml_jax.vsml.network import NetworkConfig

A, B, LR, BIAS_LR = 5, 3, 0.7, 0.05


def _weights(key):
    k1, k2 = jax.random.split(key)
    return GridWeights(w=jax.random.normal(k1, (A, B)), beta=0.1 * jax.random.normal(k2, (A, B)))


def test_tick_is_a_dense_layer_with_the_documented_scales():
    """y = tanh(x) W + b with W = w / A, b = mean_a beta; e_a = (A / B) dL/dtanh(x_a);
    the update is SGD on W with lr LR / A and on b with BIAS_LR, for L = <e, y>."""
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    g = _weights(k[0])
    x, e = jax.random.normal(k[1], (A,)), jax.random.normal(k[2], (B,))
    W, b = g.w / A, g.bias

    def loss(W, b, u):
        return jnp.dot(e, u @ W + b)

    dW, db, du = jax.grad(loss, argnums=(0, 1, 2))(W, b, jnp.tanh(x))
    new, y, e_a = reference_tick(g, x, e, LR, BIAS_LR)
    W_new, b_new = W - (LR / A) * dW, b - BIAS_LR * db
    np.testing.assert_allclose(new.w / A, W_new, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new.bias, b_new, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, jnp.tanh(x) @ W_new + b_new, rtol=1e-5, atol=1e-6)
    # the backward message is taken from the updated weights
    du_new = jax.grad(lambda u: jnp.dot(e, u @ W_new))(jnp.tanh(x))
    np.testing.assert_allclose(e_a, (A / B) * du_new, rtol=1e-5, atol=1e-6)


def test_zero_error_tick_leaves_the_weights():
    g = _weights(jax.random.PRNGKey(1))
    new, _, e_a = reference_tick(g, jnp.ones((A,)), jnp.zeros((B,)), LR, BIAS_LR)
    np.testing.assert_array_equal(new.w, g.w)
    np.testing.assert_array_equal(e_a, 0.0)


def _net(hidden=()):
    return NetworkConfig(
        hidden_layers=hidden,
        num_micro_ticks=1,
        output_channel=0,
        backward_pass=True,
        forward_sweep_feedback=False,
    )


def test_shallow_grid_sgd_is_online_sgd_on_cross_entropy():
    """The whole episode equals online SGD of the dense layer on the previous example's
    cross-entropy (logits small enough that VSML's tanh squash is the identity)."""
    D, C, T = 6, 3, 25
    k = jax.random.split(jax.random.PRNGKey(2), 3)
    xs = jax.random.normal(k[0], (T, D))
    labels = jax.random.randint(k[1], (T,), 0, C)
    learner = grid_sgd(LR, BIAS_LR, _net(), init_std=0.5)
    result = jax.jit(lambda xs: run_episode(learner, {}, xs, labels, k[2], C))(xs)
    g0 = learner.init({}, TaskSpec(D, C), k[2]).layers[0]
    W, b = g0.w / D, g0.bias

    def logits_fn(W, b, x):
        return jnp.tanh(x) @ W + b

    @jax.jit
    def grads(W, b, x, y):
        ce = lambda W, b: optax.softmax_cross_entropy_with_integer_labels(logits_fn(W, b, x), y)  # noqa: E731
        return jax.grad(ce, argnums=(0, 1))(W, b)

    expected = []
    for t in range(T):
        if t > 0:
            dW, db = grads(W, b, xs[t - 1], labels[t - 1])
            W, b = W - (LR / D) * dW, b - BIAS_LR * db
        expected.append(logits_fn(W, b, xs[t]))
    np.testing.assert_allclose(result.logits, jnp.stack(expected), rtol=1e-4, atol=1e-5)


def test_grid_sgd_with_readout_starts_from_the_vsml_cells_weights():
    """With a read-out, the initial weights are the read-out of VSML's initial cell state
    for the same key (so clone and reference start from the same network)."""
    from vsml_jax.vsml.network import init_network_state

    net = _net((4,))
    readout = np.zeros((2, net.cell.hidden), np.float32)
    readout[0, 0], readout[1, 1] = 3.0, 2.0
    task = TaskSpec(6, 3)
    key = jax.random.PRNGKey(3)
    state = grid_sgd(LR, BIAS_LR, net, readout=readout).init({}, task, key)
    cells = init_network_state(key, net, 6, 3).cells
    for layer, c in zip(state.layers, cells):
        np.testing.assert_array_equal(layer.w, 3.0 * c.c[0].T)  # cells [H, B, A]
        np.testing.assert_array_equal(layer.beta, 2.0 * c.c[1].T)
    with pytest.raises(ValueError, match="readout must be"):
        grid_sgd(network=net, readout=np.zeros((3, 3)))


def test_deep_grid_sgd_learns_a_separable_task():
    D, C, T = 8, 2, 300
    k = jax.random.split(jax.random.PRNGKey(4), 3)
    xs = jax.random.normal(k[0], (T, D))
    labels = (xs[:, 0] + xs[:, 1] > 0).astype(jnp.int32)
    learner = grid_sgd(1.0, 0.03, _net((8,)), init_std=3.0)
    result = jax.jit(lambda xs: run_episode(learner, {}, xs, labels, k[2], C))(xs)
    assert result.accuracy[-100:].mean() > 0.85


def _clone_net(hidden=()):
    from vsml_jax.vsml.cell import CellConfig

    cell = CellConfig(random_cell_copies=4, random_cell_std=0.0025)
    return NetworkConfig(
        cell=cell,
        hidden_layers=hidden,
        num_micro_ticks=1,
        output_channel=0,
        backward_pass=True,
        forward_sweep_feedback=False,
    )


@pytest.mark.parametrize("hidden", [(), (6,)])
def test_backprop_cell_is_grid_sgd_over_a_long_episode(hidden):
    """The paper's LSTM cell with backprop_cell's V_M runs the same online SGD as
    grid_sgd from the same initial weights, shallow and deep, over 1500 steps (the deep
    network's backward messages carry tanh(0.1 e) / 0.1 for e: a few % apart)."""
    from vsml_jax.learners.vsml import vsml
    from vsml_jax.vsml.backprop import backprop_cell

    net = _clone_net(hidden)
    params, readout = backprop_cell(net.cell, lr=1.0, bias_lr=0.03)
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    T, D, C = 1500, 12, 4
    labels = jax.random.randint(k[0], (T,), 0, C)
    xs = jax.random.normal(k[1], (C, D))[labels] + jax.random.normal(k[2], (T, D))
    clone = jax.jit(lambda p: run_episode(vsml(net), p, xs, labels, k[3], C))((params,))
    ref = jax.jit(lambda: run_episode(grid_sgd(1.0, 0.03, net, readout), {}, xs, labels, k[3], C))()
    assert float(ref.accuracy[-500:].mean()) > 0.8  # it learns (a real test of the rule)
    scale = float(jnp.abs(ref.logits).mean())
    tol = 0.02 if not hidden else 0.05
    assert float(jnp.abs(clone.logits - ref.logits).max()) < tol * scale
    assert float(jnp.mean(clone.logits.argmax(-1) == ref.logits.argmax(-1))) > 0.99


def test_backprop_cell_holds_its_weights_without_error():
    """A hold sequence: 5000 ticks of inputs with zero error leave the stored weights as
    they were (the forget gates are exactly 1), and the messages stay tanh(x) w + beta."""
    from experiments.la_cloning.cloning import CloneParams, layer_tick
    from experiments.la_cloning.cloning import readout as read
    from vsml_jax.vsml.backprop import backprop_cell
    from vsml_jax.vsml.cell import CellState

    cell = _clone_net().cell
    params, ro = backprop_cell(cell)
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    H, R = cell.hidden, cell.num_random
    # a layer that has learned: stored weights up to |w| ~ 60 and biases up to ~2
    w0 = 30.0 * jax.random.normal(k[0], (1, 7, 3))
    c = jnp.zeros((1, 7, 3, H)).at[..., :4].set((w0 / 2000.0)[..., None])
    c = c.at[..., R : R + 4].set(0.03).at[..., :4].add(0.03)  # a common mode too
    c = c.at[..., R + 4].set(0.02)  # beta = 1
    state = CellState(h=jnp.zeros_like(c), c=c)
    xs = 2.0 * jax.random.normal(k[1], (5000, 1, 7))

    def tick(s, x):
        s, fwd, _ = layer_tick(params, s, x, jnp.zeros((1, 3)))
        return s, fwd[..., 0]

    final, fwd = jax.lax.scan(tick, state, xs)
    w_start, b_start = read(CloneParams(params, ro), state.c)
    w_end, b_end = read(CloneParams(params, ro), final.c)
    np.testing.assert_array_equal(w_end, w_start)
    np.testing.assert_array_equal(b_end, b_start)
    want = jnp.tanh(xs[-1])[..., None] * w_start + b_start
    np.testing.assert_allclose(fwd[-1], want, rtol=0.02, atol=0.02)


def test_random_cell_copies_repeat_each_draw():
    from vsml_jax.vsml.cell import CellConfig, init_cell_state

    key = jax.random.PRNGKey(2)
    tied = init_cell_state(key, CellConfig(random_cell_copies=4), (5, 3)).c  # [H, B, A]
    np.testing.assert_array_equal(tied[0], tied[3])
    np.testing.assert_array_equal(tied[4], tied[7])
    assert not np.array_equal(tied[0], tied[4])
    assert np.all(tied[8:] == 0)
    free = init_cell_state(key, CellConfig(), (5, 3)).c
    assert not np.array_equal(free[0], free[1])
    with pytest.raises(ValueError, match="random_cell_copies"):
        CellConfig(random_cell_copies=3)
