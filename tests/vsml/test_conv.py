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
    """The layer written out with Python loops over locations and kernel entries, in numpy.

    The backward message follows ``geom.backward``: ``'transpose'`` sends each cell's
    message to the input location it read; ``'paper'`` assembles it as the paper's
    ``vsml_layers.conv`` does, per axis: input ``q`` takes offset ``k - 1 - j`` of output
    ``(q + j - 1) // s`` for ``j < k``, masked unless ``q + j - 1`` is a multiple of ``s``
    in ``[0, H_in // s)``, then the mean over ``j``."""
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
    sent = np.zeros((ho, wo, k, k, ci, m))  # per (i, j, u, v, a): mean over b of the messages
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
                            sent[i, j, u, v, a] += (h @ p.w_bwd + p.b_bwd) / co
                            if inside and geom.backward == "transpose":
                                bwd[q, r, a] += (h @ p.w_bwd + p.b_bwd) / (k * k * co)
    if geom.backward == "paper":

        def pick(q, j, size):  # the paper's idx0, idx1 and mask along one axis
            idx = q + j - 1
            ok = idx >= 0 and idx < size // s and idx % s == 0
            return ok, min(max(idx, 0), size - 1) // s, k - 1 - j

        for q in range(hi):
            for r in range(wi):
                for j1 in range(k):
                    ok1, i, u = pick(q, j1, hi)
                    for j2 in range(k):
                        ok2, j, v = pick(r, j2, wi)
                        if ok1 and ok2:
                            bwd[q, r] += sent[i, j, u, v] / (k * k)
    n = ho * wo
    return h_sum / n, c_sum / n, fwd, bwd


@pytest.mark.parametrize(
    "geom",
    [
        ConvGeometry((4, 4, 2), 2, 3, 1, "transpose"),
        ConvGeometry((4, 4, 2), 2, 3, 2, "transpose"),
        ConvGeometry((5, 6, 1), 2, 5, 2, "transpose"),
        ConvGeometry((6, 6, 1), 2, 3, 2, "paper"),
        ConvGeometry((6, 6, 1), 2, 5, 2, "paper"),  # the paper's -1 offset assumes k = 3
        ConvGeometry((7, 7, 1), 1, 5, 1, "paper"),
    ],
    ids=str,
)
def test_direct_equals_loop_construction(geom):
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
        ConvGeometry((4, 4, 2), 2, 2, 2, "transpose"),  # even kernel
        ConvGeometry((6, 7, 1), 2, 3, 2, "paper"),
        ConvGeometry((6, 6, 2), 1, 5, 2, "paper"),
    ],
    ids=str,
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
    """Shapes and zeros; the scale of the random part: tests/vsml/test_paper_fixtures.py."""
    geom = ConvGeometry((6, 6, 2), out_channels=3)
    state = init_conv_state(jax.random.PRNGKey(0), CFG, geom)
    assert state.h.shape == state.c.shape == (3, 3, 2, 3, CFG.hidden)
    assert float(jnp.abs(state.h).max()) == 0.0
    assert float(jnp.abs(state.c[..., : CFG.num_random]).max()) > 0.0


def test_paper_and_transpose_backward_messages():
    """The two backward messages agree where the paper's mask is exact (stride 1, k = 3)
    and differ for stride 2; the forward message and the state never depend on the choice."""
    for stride, same in ((1, True), (2, False)):
        outs = []
        for backward in ("paper", "transpose"):
            geom = ConvGeometry((6, 6, 2), 2, 3, stride, backward)
            params, state, f, e = _setup(geom, seed=2)
            outs.append(jax.jit(conv_fast, static_argnums=4)(params, state, f, e, geom))
        (s1, f1, b1), (s2, f2, b2) = outs
        np.testing.assert_array_equal(f1, f2)
        np.testing.assert_array_equal(s1.h, s2.h)
        assert np.allclose(b1, b2, atol=1e-6) == same, stride


@pytest.mark.parametrize("backward", ["paper", "transpose"])
def test_fast_equals_direct_in_float64(backward):
    """The fast path computes in the input dtype: in float64 it agrees with the direct
    path to float64 rounding."""
    geom = ConvGeometry((7, 6, 2), 3, 3, 2, backward)
    params, state, f, e = _setup(geom, seed=4)
    with jax.enable_x64(True):
        to64 = lambda t: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), t)  # noqa: E731
        args = to64((params, state, f, e))
        ref = jax.jit(conv_direct, static_argnums=4)(*args, geom)
        out = jax.jit(conv_fast, static_argnums=4)(*args, geom)
        for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(ref), strict=True):
            assert got.dtype == jnp.float64
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)


def test_bad_backward_choice():
    with pytest.raises(ValueError, match="conv backward must be one of paper, transpose"):
        ConvGeometry((4, 4, 1), 2, backward="mask")
