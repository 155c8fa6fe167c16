"""A VSML network with conv layers before the dense ones: a numpy construction of whole
steps with the backward pass, fast == direct, shapes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.vsml.test_conv import loop_conv
from vsml_jax.episode import run_episode
from vsml_jax.learners.base import TaskSpec
from vsml_jax.learners.vsml import vsml
from vsml_jax.vsml.cell import CellConfig, CellParams, CellState
from vsml_jax.vsml.network import (
    NetworkConfig,
    conv_geometries,
    init_network_state,
    layer_sizes,
    network_step,
)

CONV = dict(
    cell=CellConfig(hidden=4, message=3),
    conv_channels=(2,),
    image_shape=(4, 4, 1),
    feed_label=True,
)


def _episode(cfg, C=3, T=5):
    learner = vsml(cfg)
    D = int(np.prod(cfg.image_shape))
    mp = learner.meta_init(jax.random.PRNGKey(0), TaskSpec(D, C))
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(T, D)).astype(np.float32)
    ys = rng.integers(0, C, T).astype(np.int32)
    run = jax.jit(lambda mp: run_episode(learner, mp, xs, ys, jax.random.PRNGKey(1), C))
    return run(mp)


def test_conv_network_fast_equals_direct_over_an_episode():
    fast = _episode(NetworkConfig(impl="fast", **CONV))
    direct = _episode(NetworkConfig(impl="direct", **CONV))
    assert fast.logits.shape == (5, 3)
    np.testing.assert_allclose(fast.logits, direct.logits, atol=1e-4, rtol=1e-4)
    assert np.isfinite(np.asarray(fast.loss)).all()


def test_conv_network_sizes_and_state():
    cfg = NetworkConfig(**CONV)
    # 4x4x1 -> (3x3 kernel, stride 2) 2x2x2 = 8 inputs of the dense layer -> 3 classes
    assert layer_sizes(cfg, 16, 3) == (16, 8, 3)
    learner = vsml(cfg)
    state = jax.jit(learner.init, static_argnums=1)(None, TaskSpec(16, 3), jax.random.PRNGKey(0))
    assert state.cells[0].h.shape == (3, 3, 1, 2, 4)  # one cell per kernel entry
    assert state.cells[1].h.shape == (4, 3, 8)  # dense: [H, B, A]
    assert [b.shape for b in state.bwd_msgs] == [(16, 3), (8, 3)]


def test_conv_network_bad_config():
    with pytest.raises(ValueError, match="need image_shape"):
        NetworkConfig(conv_channels=(2,))
    with pytest.raises(ValueError, match="conv_backward must be one of paper, transpose"):
        NetworkConfig(conv_backward="adjoint")
    with pytest.raises(ValueError, match="has 16 pixels but the inputs have 32"):
        layer_sizes(NetworkConfig(**CONV), 32, 3)


def _np_dense(p, state, f, e):
    """A dense layer in numpy: state ``[H, B, A]``, messages mean-reduced."""
    h0, c0 = np.asarray(state.h).T, np.asarray(state.c).T  # [A, B, H]
    m = f.shape[-1]
    z = (f @ p.w_in[:m])[:, None] + (e @ p.w_in[m:])[None] + h0 @ p.w_h + p.b
    zi, zf, zg, zo = np.split(z, 4, axis=-1)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    c = sig(zf) * c0 + sig(zi) * np.tanh(zg)
    h = sig(zo) * np.tanh(c)
    fwd = (h @ p.w_fwd + p.b_fwd).mean(axis=0)
    bwd = (h @ p.w_bwd + p.b_bwd).mean(axis=1)
    return CellState(h=h.T, c=c.T), fwd, bwd


def np_network_step(cfg: NetworkConfig, p, state, x, error, label):
    """``network_step`` with ``backward_pass`` written out in numpy after the paper's
    ``VSMLRNN``: the reverse tick (top-down; each layer reads the forward message its lower
    neighbour emitted last and the fresh backward message from above) over the previous
    input with the previous error, skipped when there is none; then the forward tick
    (bottom-up) over the new input with zero error at the top. Returns the new cells,
    the backward and forward messages in flight, and the logits."""
    geoms = conv_geometries(cfg)
    m = cfg.cell.message
    cells = [CellState(np.asarray(c.h), np.asarray(c.c)) for c in state.cells]
    bwd = [np.asarray(b) for b in state.bwd_msgs]
    fwd = [np.asarray(f) for f in state.fwd_msgs]
    n = len(cells)

    def tick(layer, f_in, e_in):
        if layer < len(geoms):
            g = geoms[layer]
            h, c, f, b = loop_conv(
                p, cells[layer], f_in.reshape(*g.in_shape, m), e_in.reshape(*g.out_shape, m), g
            )
            return CellState(h, c), f.reshape(-1, m), b.reshape(-1, m)
        return _np_dense(p, cells[layer], f_in, e_in)

    top = np.zeros((len(error), m))
    top[:, 0], top[:, 1] = error, label
    if np.any(top != 0):
        inputs = [np.zeros((len(x), m))]
        inputs[0][:, 0] = state.prev_x
        for layer in range(n - 1):  # what layer `layer` emitted last
            if layer < len(geoms):
                inputs.append(fwd[layer])
            else:
                h = np.asarray(cells[layer].h).T  # [A, B, H]
                inputs.append((h @ p.w_fwd + p.b_fwd).mean(axis=0))
        e = top
        for layer in reversed(range(n)):
            e_in = e
            for _ in range(cfg.num_micro_ticks):
                cells[layer], _, e = tick(layer, inputs[layer], e_in)
            bwd[layer] = e
    f = np.zeros((len(x), m))
    f[:, 0] = x
    for layer in range(n):
        e = np.zeros_like(top) if layer == n - 1 else bwd[layer + 1]
        f_in = f
        for _ in range(cfg.num_micro_ticks):
            cells[layer], f, bwd[layer] = tick(layer, f_in, e)
        if layer < len(geoms):
            fwd[layer] = f
    logits = np.tanh(f[:, cfg.output_channel] / cfg.output_scale) * cfg.output_scale
    return cells, bwd, fwd, logits


@pytest.mark.parametrize(
    "impl,conv_backward", [("fast", "paper"), ("direct", "transpose")], ids=str
)
def test_conv_backward_pass_equals_numpy_construction(impl, conv_backward):
    """conv -> conv -> dense -> dense (5x5x1 -> 3x3x2 -> 2x2x2 -> 4 -> 3), backward pass,
    fed label, 2 micro-ticks: three steps (the first skips the top-down sweep) from random
    parameters and a random mid-episode state, against :func:`np_network_step`."""
    cfg = NetworkConfig(
        cell=CellConfig(hidden=4, message=3),
        conv_channels=(2, 2),
        image_shape=(5, 5, 1),
        hidden_layers=(4,),
        backward_pass=True,
        feed_label=True,
        impl=impl,
        conv_backward=conv_backward,
    )
    rng = np.random.default_rng(3)
    H, m, C = 4, 3, 3
    r = lambda *shape, std=1.0: jnp.asarray(std * rng.normal(size=shape), jnp.float32)  # noqa: E731
    p = CellParams(
        w_in=r(2 * m, 4 * H, std=m**-0.5),
        w_h=r(H, 4 * H, std=H**-0.5),
        b=r(4 * H),
        w_fwd=r(H, m, std=H**-0.5),
        b_fwd=r(m),
        w_bwd=r(H, m, std=H**-0.5),
        b_bwd=r(m),
        ln_scale=jnp.ones((2, m)),
        ln_bias=jnp.zeros((2, m)),
    )
    state = init_network_state(jax.random.PRNGKey(0), cfg, 25, C)
    state = state.replace(
        cells=tuple(CellState(h=r(*c.h.shape, std=0.3), c=r(*c.c.shape)) for c in state.cells),
        bwd_msgs=tuple(r(*b.shape) for b in state.bwd_msgs),
        fwd_msgs=tuple(r(*f.shape) for f in state.fwd_msgs),
    )
    step = jax.jit(network_step, static_argnums=0)
    ref = (list(state.cells), list(state.bwd_msgs), list(state.fwd_msgs))
    np_p = jax.tree.map(lambda x: np.asarray(x, np.float64), p)
    error, label = np.zeros(C), np.zeros(C)
    for t in range(3):
        x = rng.normal(size=25)
        ref_state = state.replace(
            cells=tuple(ref[0]), bwd_msgs=tuple(ref[1]), fwd_msgs=tuple(ref[2])
        )
        *ref, want = np_network_step(cfg, np_p, ref_state, x, error, label)
        state, logits = step(cfg, (p,), state, jnp.asarray(x, jnp.float32), error, label)
        np.testing.assert_allclose(logits, want, atol=2e-5, err_msg=f"step {t}")
        for got, exp in zip(jax.tree.leaves(state.cells), jax.tree.leaves(ref[0]), strict=True):
            np.testing.assert_allclose(got, exp, atol=2e-5, err_msg=f"step {t}")
        for got, exp in zip((*state.bwd_msgs, *state.fwd_msgs), (*ref[1], *ref[2]), strict=True):
            np.testing.assert_allclose(got, exp, atol=2e-5, err_msg=f"step {t}")
        label = np.eye(C)[t % C]
        error = np.exp(want) / np.exp(want).sum() - label
