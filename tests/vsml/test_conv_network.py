"""A VSML network with a conv layer before the dense ones: fast == direct, shapes, errors."""

import jax
import numpy as np
import pytest

from vsml_jax.episode import run_episode
from vsml_jax.learners.base import TaskSpec
from vsml_jax.learners.vsml import vsml
from vsml_jax.vsml.cell import CellConfig
from vsml_jax.vsml.network import NetworkConfig

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
    assert cfg.sizes(16, 3) == (16, 8, 3)
    learner = vsml(cfg)
    state = jax.jit(learner.init, static_argnums=1)(None, TaskSpec(16, 3), jax.random.PRNGKey(0))
    assert state.cells[0].h.shape == (3, 3, 1, 2, 4)  # one cell per kernel entry
    assert state.cells[1].h.shape == (4, 3, 8)  # dense: [H, B, A]
    assert [b.shape for b in state.bwd_msgs] == [(16, 3), (8, 3)]


def test_conv_network_bad_config():
    with pytest.raises(ValueError, match="need image_shape"):
        NetworkConfig(conv_channels=(2,))
    with pytest.raises(ValueError, match="backward_pass=False only"):
        NetworkConfig(conv_channels=(2,), image_shape=(4, 4, 1), backward_pass=True)
    with pytest.raises(ValueError, match="has 16 pixels but the inputs have 32"):
        NetworkConfig(**CONV).sizes(32, 3)
