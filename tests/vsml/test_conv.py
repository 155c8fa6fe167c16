"""The conv VSML layer: direct equals an explicit loop construction, fast equals direct."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml_jax.vsml.cell import CellConfig, CellParams, CellState
from vsml_jax.vsml.conv import ConvGeometry, conv, conv_direct, conv_fast, init_conv_state

CFG = CellConfig(hidden=4, message=3)


def _setup(geom: ConvGeometry, cfg=CFG, seed=0):
    """Random parameters, state and messages, drawn with numpy (no compiles)."""
    rng = np.random.default_rng(seed)
    H, m = cfg.hidden, cfg.message
    r = lambda *shape, std=1.0: jnp.asarray(std * rng.normal(size=shape), jnp.float32)  # noqa: E731
    params = CellParams(
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
    state = CellState(h=r(*geom.state_shape, H, std=0.3), c=r(*geom.state_shape, H))
    f = r(*geom.in_shape, m)
    e = r(*geom.out_shape, m)
    return params, state, f, e


def loop_conv(params, state, f, e, geom: ConvGeometry):
    """The layer written out with Python loops over locations and kernel entries, in numpy."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    h0, c0 = np.asarray(state.h, np.float64), np.asarray(state.c, np.float64)
    f, e = np.asarray(f, np.float64), np.asarray(e, np.float64)
    hi, wi, ci = geom.in_shape
    ho, wo, co = geom.out_shape
    k, s, pad = geom.kernel, geom.stride, geom.pad
    m = f.shape[-1]
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    h_sum, c_sum = np.zeros_like(h0), np.zeros_like(c0)
    fwd = np.zeros((ho, wo, co, m))
    bwd = np.zeros((hi, wi, ci, m))
    for i in range(ho):
        for j in range(wo):
            for u in range(k):
                for v in range(k):
                    q, r = i * s + u - pad, j * s + v - pad
                    inside = 0 <= q < hi and 0 <= r < wi
                    for a in range(ci):
                        f_in = f[q, r, a] if inside else np.zeros(m)
                        for b in range(co):
                            x = np.concatenate([f_in, e[i, j, b]])
                            z = x @ p.w_in + h0[u, v, a, b] @ p.w_h + p.b
                            zi, zf, zg, zo = np.split(z, 4)
                            c = sig(zf) * c0[u, v, a, b] + sig(zi) * np.tanh(zg)
                            h = sig(zo) * np.tanh(c)
                            h_sum[u, v, a, b] += h
                            c_sum[u, v, a, b] += c
                            fwd[i, j, b] += (h @ p.w_fwd + p.b_fwd) / (k * k * ci)
                            if inside:
                                bwd[q, r, a] += (h @ p.w_bwd + p.b_bwd) / (k * k * co)
    n = ho * wo
    return h_sum / n, c_sum / n, fwd, bwd


@pytest.mark.parametrize("stride", [1, 2])
def test_direct_equals_loop_construction(stride):
    geom = ConvGeometry((4, 4, 2), out_channels=2, kernel=3, stride=stride)
    params, state, f, e = _setup(geom)
    new, fwd, bwd = jax.jit(conv_direct, static_argnums=4)(params, state, f, e, geom)
    h, c, fwd_ref, bwd_ref = loop_conv(params, state, f, e, geom)
    np.testing.assert_allclose(new.h, h, atol=1e-5)
    np.testing.assert_allclose(new.c, c, atol=1e-5)
    np.testing.assert_allclose(fwd, fwd_ref, atol=1e-5)
    np.testing.assert_allclose(bwd, bwd_ref, atol=1e-5)


@pytest.mark.parametrize(
    "geom",
    [
        ConvGeometry((4, 4, 2), 2, 3, 1),
        ConvGeometry((5, 6, 1), 3, 3, 2),
        ConvGeometry((4, 4, 2), 2, 2, 2),  # even kernel
    ],
)
def test_fast_equals_direct(geom):
    params, state, f, e = _setup(geom, seed=1)
    direct = jax.jit(conv_direct, static_argnums=4)
    fast = jax.jit(conv_fast, static_argnums=4)
    for _ in range(2):  # two ticks: the second starts from a state the first produced
        ref = direct(params, state, f, e, geom)
        out = fast(params, state, f, e, geom)
        for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(ref)):
            np.testing.assert_allclose(got, want, atol=1e-5)
        state = ref[0]


def test_shapes_and_dispatch():
    geom = ConvGeometry((7, 7, 1), out_channels=4, kernel=3, stride=2)
    assert geom.out_shape == (4, 4, 4)
    params, state, f, e = _setup(geom)
    assert state.h.shape == (3, 3, 1, 4, CFG.hidden)
    new, fwd, bwd = jax.jit(lambda *a: conv(*a, geom))(params, state, f, e)
    assert new.h.shape == state.h.shape and fwd.shape == e.shape and bwd.shape == f.shape
    with pytest.raises(ValueError, match="layer_norm"):
        conv_fast(params, state, f, e, geom, layer_norm=True)
    with pytest.raises(ValueError, match="unknown layer impl"):
        conv(params, state, f, e, geom, impl="nope")


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        ConvGeometry((4, 4), 2)
    with pytest.raises(ValueError, match=">= 1"):
        ConvGeometry((4, 4, 1), 0)
    geom = ConvGeometry((4, 4, 2), 2)
    params, state, f, e = _setup(geom)
    with pytest.raises(AssertionError):
        conv_fast(params, state, f[:3], e, geom)
    with pytest.raises(AssertionError):
        conv_direct(params, state, f, jnp.zeros((3, 3, 2, CFG.message)), geom)


def test_init_conv_state():
    geom = ConvGeometry((6, 6, 2), out_channels=3)
    state = init_conv_state(jax.random.PRNGKey(0), CFG, geom)
    assert state.h.shape == state.c.shape == (3, 3, 2, 3, CFG.hidden)
    assert float(jnp.abs(state.h).max()) == 0.0
    assert float(jnp.abs(state.c[..., : CFG.num_random]).max()) > 0.0
