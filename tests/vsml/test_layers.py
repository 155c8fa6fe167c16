"""The three views of a VSML layer agree, and the fast path equals the direct one."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.learners.utils import fast_jit
from tests.marks import needs_kernel
from vsml_jax.vsml.cell import CellConfig, CellState, init_cell_params, init_cell_state
from vsml_jax.vsml.layers import dense, dense_direct, dense_fast
from vsml_jax.vsml.network import (
    NetworkConfig,
    NetworkState,
    init_network_params,
    init_network_state,
    network_step,
)

jax.config.update("jax_enable_x64", False)


def _setup(A, B, cfg=CellConfig(), seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    params = init_cell_params(k[0], cfg)
    # perturb biases/heads so nothing is trivially zero
    params = params.replace(
        b_fwd=jax.random.normal(k[3], params.b_fwd.shape),
        b_bwd=-jax.random.normal(k[3], params.b_bwd.shape),
    )
    state = init_cell_state(k[1], cfg, (A, B))
    state = state.replace(h=0.3 * jax.random.normal(k[2], state.h.shape))
    f = jax.random.normal(jax.random.fold_in(k[2], 1), (A, cfg.message))
    e = jax.random.normal(jax.random.fold_in(k[2], 2), (B, cfg.message))
    return params, state, f, e


def big_rnn_layer(params, state: CellState, f, e):
    """Eq. (5)/(6) of the paper: one big LSTM whose weight matrix is block-sparse,
    every block a copy of the shared V_M, built explicitly with Python loops. The grid
    state is the layer's ``[H, B, A]``; the big RNN's units are ordered ``(a, b, h)``."""
    p = jax.tree.map(np.asarray, params)
    H, B, A = state.h.shape
    m = f.shape[-1]
    n = A * B
    idx = lambda a, b: a * B + b  # noqa: E731
    # input vector u = [f_1 .. f_A, e_1 .. e_B]
    u = np.concatenate([np.asarray(f).ravel(), np.asarray(e).ravel()])
    W_u = np.zeros(((A + B) * m, n * 4 * H), np.float32)
    W_s = np.zeros((n * H, n * 4 * H), np.float32)
    bias = np.zeros(n * 4 * H, np.float32)
    for a in range(A):
        for b in range(B):
            c = idx(a, b)
            cols = slice(c * 4 * H, (c + 1) * 4 * H)
            W_u[a * m : (a + 1) * m, cols] = p.w_in[:m]
            W_u[(A + b) * m : (A + b + 1) * m, cols] = p.w_in[m:]
            W_s[c * H : (c + 1) * H, cols] = p.w_h
            bias[cols] = p.b
    h = np.asarray(state.h).T.reshape(n * H)
    c_prev = np.asarray(state.c).T.reshape(n, H)
    z = (u @ W_u + h @ W_s + bias).reshape(n, 4, H)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    c_new = sig(z[:, 1]) * c_prev + sig(z[:, 0]) * np.tanh(z[:, 2])
    h_new = sig(z[:, 3]) * np.tanh(c_new)
    # output matrices with the 1/A and 1/B means folded in
    W_f = np.zeros((n * H, B * m), np.float32)
    W_b = np.zeros((n * H, A * m), np.float32)
    for a in range(A):
        for b in range(B):
            rows = slice(idx(a, b) * H, (idx(a, b) + 1) * H)
            W_f[rows, b * m : (b + 1) * m] = p.w_fwd / A
            W_b[rows, a * m : (a + 1) * m] = p.w_bwd / B
    fwd = (h_new.ravel() @ W_f).reshape(B, m) + p.b_fwd
    bwd = (h_new.ravel() @ W_b).reshape(A, m) + p.b_bwd
    return h_new.reshape(A, B, H).T, c_new.reshape(A, B, H).T, fwd, bwd


dense_fused = functools.partial(dense_fast, fused=True)


@pytest.mark.parametrize(
    "layer",
    [dense_direct, dense_fast, pytest.param(dense_fused, marks=needs_kernel)],
    ids=["direct", "fast", "fused"],
)
def test_layer_equals_big_sparse_rnn(layer):
    params, state, f, e = _setup(3, 2)
    new, fwd, bwd = jax.jit(layer)(params, state, f, e)
    h, c, fwd_ref, bwd_ref = big_rnn_layer(params, state, f, e)
    np.testing.assert_allclose(new.h, h, atol=1e-5)
    np.testing.assert_allclose(new.c, c, atol=1e-5)
    np.testing.assert_allclose(fwd, fwd_ref, atol=1e-5)
    np.testing.assert_allclose(bwd, bwd_ref, atol=1e-5)


def big_rnn_network_step(cfg: NetworkConfig, params, state: NetworkState, x, error):
    """One ``network_step`` (no backward pass, no label) written with the big sparse RNN
    of each layer (:func:`big_rnn_layer`) and the schedule of the paper's code: layers
    bottom-up, each ticked ``num_micro_ticks`` times with its incoming messages fixed.
    Returns the new cells, the backward messages and the logits, as numpy arrays."""
    m = cfg.cell.message
    f = np.zeros((len(x), m), np.float32)
    f[:, 0] = x
    top = np.zeros((len(error), m), np.float32)
    top[:, 0] = error
    cells, bwd_msgs = list(state.cells), [np.asarray(b) for b in state.bwd_msgs]
    n = len(cells)
    for layer in range(n):
        p = params[0] if len(params) == 1 else params[layer]
        e = top if layer == n - 1 else np.asarray(state.bwd_msgs[layer + 1])
        f_in = f
        for _ in range(cfg.num_micro_ticks):
            h, c, f, bwd_msgs[layer] = big_rnn_layer(p, cells[layer], f_in, e)
            cells[layer] = CellState(h=h, c=c)
    logits = np.tanh(f[:, cfg.output_channel] / cfg.output_scale) * cfg.output_scale
    return cells, bwd_msgs, logits


@functools.partial(fast_jit, static_argnums=0)  # one compile, not one per eager op
def _network_setup(cfg: NetworkConfig, key):
    """Parameters, a mid-episode state (nonzero hidden states and backward messages in
    flight) and an input for a 5 -> 4 -> 3 network."""
    k = jax.random.split(key, 6)
    params = init_network_params(k[0], cfg, num_layers=2)
    params = tuple(
        p.replace(
            b_fwd=jax.random.normal(kk, p.b_fwd.shape), b_bwd=jax.random.normal(kk, p.b_bwd.shape)
        )
        for p, kk in zip(params, jax.random.split(k[1], len(params)), strict=True)
    )
    state = init_network_state(k[2], cfg, 5, 3)
    state = state.replace(
        cells=tuple(
            s.replace(h=0.3 * jax.random.normal(kk, s.h.shape))
            for s, kk in zip(state.cells, jax.random.split(k[3], 2), strict=True)
        ),
        bwd_msgs=tuple(
            jax.random.normal(kk, b.shape)
            for b, kk in zip(state.bwd_msgs, jax.random.split(k[4], 2), strict=True)
        ),
    )
    return params, state, jax.random.normal(k[5], (5,))


@pytest.mark.parametrize(
    "impl,share_layers",
    [
        ("fast", True),
        ("direct", True),
        ("fast", False),
        pytest.param("fused", True, marks=needs_kernel),
    ],
)
def test_two_layer_network_with_micro_ticks_equals_big_sparse_rnn(impl, share_layers):
    """Eq. (5)/(6) for a whole step: 2 layers (5 -> 4 -> 3), 2 micro-ticks, fed-back error."""
    cfg = NetworkConfig(hidden_layers=(4,), num_micro_ticks=2, impl=impl, share_layers=share_layers)
    params, state, x = _network_setup(cfg, jax.random.PRNGKey(7))
    error = jnp.array([0.2, -0.5, 0.3])
    new, logits = fast_jit(network_step, static_argnums=0)(
        cfg, params, state, x, error, jnp.zeros(3)
    )
    cells, bwd_msgs, logits_ref = big_rnn_network_step(cfg, params, state, x, error)
    for got, want in zip(new.cells, cells, strict=True):
        np.testing.assert_allclose(got.h, want.h, atol=1e-5)
        np.testing.assert_allclose(got.c, want.c, atol=1e-5)
    for got, want in zip(new.bwd_msgs, bwd_msgs, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(logits, logits_ref, atol=1e-5)


@pytest.mark.parametrize("A,B", [(3, 2), (17, 10), (64, 5)])
def test_fast_equals_direct(A, B):
    params, state, f, e = _setup(A, B, seed=A)
    s1, f1, b1 = jax.jit(dense_direct)(params, state, f, e)
    s2, f2, b2 = jax.jit(dense_fast)(params, state, f, e)
    for x, y in [(s1.h, s2.h), (s1.c, s2.c), (f1, f2), (b1, b2)]:
        np.testing.assert_allclose(x, y, atol=2e-5, rtol=1e-5)


@needs_kernel
@pytest.mark.parametrize("A,B", [(1, 1), (16, 1), (17, 10), (64, 5), (784, 10)])
def test_fused_equals_fast(A, B):
    """Full 16-cell blocks, a partial one, both, and the paper's grid."""
    params, state, f, e = _setup(A, B, seed=A)
    s1, f1, b1 = jax.jit(dense_fast)(params, state, f, e)
    s2, f2, b2 = jax.jit(dense_fused)(params, state, f, e)
    for x, y in [(s1.h, s2.h), (s1.c, s2.c), (f1, f2), (b1, b2)]:
        np.testing.assert_allclose(x, y, atol=2e-6, rtol=1e-6)


def test_fast_path_refuses_layer_norm_and_auto_picks_direct():
    cfg = CellConfig(layer_norm=True)
    params, state, f, e = _setup(4, 3, cfg)
    with pytest.raises(ValueError, match="linear message heads"):
        dense_fast(params, state, f, e, layer_norm=True)
    auto = jax.jit(functools.partial(dense, layer_norm=True, impl="auto"))(params, state, f, e)
    direct = jax.jit(functools.partial(dense_direct, layer_norm=True))(params, state, f, e)
    np.testing.assert_allclose(auto[1], direct[1])
    # layer norm really changes the messages
    plain = jax.jit(dense_direct)(params, state, f, e)
    assert not np.allclose(plain[1], direct[1])


def test_permuting_inputs_permutes_nothing_in_the_output():
    """Reordering the inputs together with their rows of cells leaves the
    forward output unchanged and permutes the backward output the same way."""
    A, B = 7, 4
    params, state, f, e = _setup(A, B)
    perm = np.random.RandomState(0).permutation(A)
    fast = jax.jit(dense_fast)
    s1, fwd1, bwd1 = fast(params, state, f, e)
    state_p = jax.tree.map(lambda x: x[..., perm], state)  # [H, B, A]
    s2, fwd2, bwd2 = fast(params, state_p, f[perm], e)
    np.testing.assert_allclose(fwd1, fwd2, atol=1e-6)
    np.testing.assert_allclose(bwd1[perm], bwd2, atol=1e-6)
    np.testing.assert_allclose(s1.h[..., perm], s2.h, atol=1e-6)


def test_cell_init_follows_the_paper():
    cfg = CellConfig()
    params = init_cell_params(jax.random.PRNGKey(0), cfg)
    H = cfg.hidden
    b = np.asarray(params.b).reshape(4, H)
    assert np.all(b[0] == -5.0) and np.all(b[1] == 5.0) and np.all(b[2:] == 0.0)
    std = np.asarray(params.w_h).std()
    assert 0.5 / np.sqrt(H) < std < 1.0 / np.sqrt(H)  # truncated normal, 1/sqrt(fan_in)
    st = init_cell_state(jax.random.PRNGKey(1), cfg, (5, 3))
    assert st.c.shape == (H, 3, 5) and np.all(np.asarray(st.h) == 0)  # [H, B, A]
    assert np.all(np.asarray(st.c)[H // 2 :] == 0)
    assert np.all(np.asarray(st.c)[: H // 2] != 0)
    with pytest.raises(ValueError):
        CellConfig(random_cell_fraction=1.5)


def test_shape_errors_are_caught():
    params, state, f, e = _setup(3, 2)
    with pytest.raises(AssertionError):
        dense_fast(params, state, f[:2], e)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_accelerator_tick_equals_the_cpu_tick(dtype):
    """The tick accelerators run (the recurrent term as broadcast multiply-adds, each gate
    summed on its own, nothing ``[4H, B, A]`` materialised) equals the CPU's matmul tick
    to float32 rounding; CPUs keep running the matmul tick."""
    from vsml_jax.vsml.cell import lstm_update_grid, lstm_update_grid_elementwise, matmul

    params, state, f, e = _setup(13, 5)
    m = f.shape[-1]
    rows = params.w_in[:m].T @ f.T
    cols = params.w_in[m:].T @ e.T
    grid = rows[:, None, :] + cols[:, :, None]
    want = jax.jit(lstm_update_grid, static_argnums=3)(params, state, grid, dtype)
    got = jax.jit(lstm_update_grid_elementwise, static_argnums=4)(params, state, rows, cols, dtype)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, atol=2e-6, rtol=1e-5)

    @jax.jit
    def matmul_tick(params, state, f, e):  # the CPU tick, as dense_fast computed it before
        r, c = matmul(params.w_in[:m].T, f.T, dtype), matmul(params.w_in[m:].T, e.T, dtype)
        return lstm_update_grid(params, state, r[:, None, :] + c[:, :, None], dtype)

    # on a CPU the layer still takes the matmul tick, to the last bit
    new, _, _ = jax.jit(dense_fast, static_argnums=(4, 5))(params, state, f, e, False, dtype)
    for g, w in zip(jax.tree.leaves(new), jax.tree.leaves(matmul_tick(params, state, f, e))):
        np.testing.assert_array_equal(g, w)


def test_bfloat16_matmul_follows_the_platform_lowered_for():
    """A bfloat16 matmul lowered for a TPU multiplies bfloat16 operands; lowered for a
    CPU, their float32 copies (the same products): the program's platform decides, not
    the backend of the process that compiles it."""
    from vsml_jax.vsml.cell import matmul

    a, b = jnp.linspace(-1, 1, 32).reshape(4, 8), jnp.linspace(0, 2, 24).reshape(8, 3)
    traced = jax.jit(lambda a, b: matmul(a, b, "bfloat16")).trace(a, b)

    def dots(platform):
        text = traced.lower(lowering_platforms=(platform,)).as_text()
        return [x.split(":")[-1].strip() for x in text.splitlines() if "dot_general" in x]

    assert dots("tpu") == ["(tensor<4x8xbf16>, tensor<8x3xbf16>) -> tensor<4x3xf32>"]
    assert dots("cpu") == ["(tensor<4x8xf32>, tensor<8x3xf32>) -> tensor<4x3xf32>"]
    rounded = [x.astype(jnp.bfloat16).astype(jnp.float32) for x in (a, b)]
    np.testing.assert_array_equal(matmul(a, b, "bfloat16"), rounded[0] @ rounded[1])


def test_matmul_precision_is_float32_on_a_cpu_at_every_setting():
    """``cell.precision`` sets every matmul's precision; a CPU multiplies float32 at all
    of them (on a TPU 'default' is one bfloat16 pass), so CPU results do not change."""
    import dataclasses

    from vsml_jax.learners.base import Feedback, TaskSpec
    from vsml_jax.learners.vsml import vsml

    cfg = NetworkConfig(hidden_layers=(6,))
    outs = []
    for precision in ("default", "highest"):
        net = dataclasses.replace(cfg, cell=dataclasses.replace(cfg.cell, precision=precision))
        learner = vsml(net)
        task = TaskSpec(input_dim=9, num_classes=3)
        params = learner.meta_init(jax.random.PRNGKey(0), task)
        state = learner.init(params, task, jax.random.PRNGKey(1))
        x = jax.random.normal(jax.random.PRNGKey(2), (9,))
        fb = Feedback(error=jnp.array([0.2, -0.5, 0.3]), label=jnp.array([0.0, 1.0, 0.0]))
        text = jax.jit(learner.step).lower(params, state, x, fb).as_text()
        if precision == "highest":  # 'default' is XLA's default: no attribute
            assert "precision = [HIGHEST, HIGHEST]" in text
        outs.append(jax.jit(learner.step)(params, state, x, fb))
    for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1]), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="cell.precision must be one of"):
        CellConfig(precision="bf16")
