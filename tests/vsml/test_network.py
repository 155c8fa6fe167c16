"""VSML network and learner: fast == direct end to end, determinism, options."""

import jax
import numpy as np
import pytest

from tests.marks import needs_kernel
from vsml_jax.episode import run_episode
from vsml_jax.learners.base import TaskSpec
from vsml_jax.learners.vsml import vsml
from vsml_jax.vsml.cell import CellConfig
from vsml_jax.vsml.network import NetworkConfig


def _episode(cfg, D=12, C=4, T=30, seed=0):
    learner = vsml(cfg)
    mp = learner.meta_init(jax.random.PRNGKey(seed), TaskSpec(D, C))
    k = jax.random.split(jax.random.PRNGKey(seed + 1), 3)
    xs = jax.random.normal(k[0], (T, D))
    ys = jax.random.randint(k[1], (T,), 0, C)
    run = jax.jit(lambda mp: run_episode(learner, mp, xs, ys, k[2], C))
    return run(mp)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"hidden_layers": (6,)},
        {"hidden_layers": (6, 5), "backward_pass": True},
        {"hidden_layers": (6,), "backward_pass": True, "forward_sweep_feedback": False},
        {"feed_label": True, "num_micro_ticks": 3},
        {"share_layers": False, "hidden_layers": (5,)},
    ],
)
def test_fast_equals_direct_over_an_episode(options):
    fast = _episode(NetworkConfig(impl="fast", **options))
    direct = _episode(NetworkConfig(impl="direct", **options))
    np.testing.assert_allclose(fast.logits, direct.logits, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(fast.loss, direct.loss, atol=1e-5, rtol=1e-5)


@needs_kernel
@pytest.mark.parametrize(
    "options",
    [{}, {"hidden_layers": (6, 5), "backward_pass": True}, {"feed_label": True}],
)
def test_fused_equals_fast_over_an_episode(options):
    fast = _episode(NetworkConfig(impl="fast", **options), T=60)
    fused = _episode(NetworkConfig(impl="fused", **options), T=60)
    np.testing.assert_allclose(fused.logits, fast.logits, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(fused.loss, fast.loss, atol=1e-5, rtol=1e-5)


def test_same_seed_gives_bitwise_identical_episodes():
    a = _episode(NetworkConfig(hidden_layers=(5,)), seed=3)
    b = _episode(NetworkConfig(hidden_layers=(5,)), seed=3)
    c = _episode(NetworkConfig(hidden_layers=(5,)), seed=4)
    assert np.array_equal(np.asarray(a.logits), np.asarray(b.logits))
    assert not np.array_equal(np.asarray(a.logits), np.asarray(c.logits))


def test_outputs_are_bounded_and_shapes_right():
    r = _episode(NetworkConfig(), D=9, C=3, T=17)
    assert r.logits.shape == (17, 3) and r.loss.shape == (17,) and r.accuracy.shape == (17,)
    assert np.all(np.abs(np.asarray(r.logits)) <= 100.0)


def test_feedback_reaches_the_network():
    """Changing only the labels (hence the fed-back error) changes later predictions."""
    learner = vsml(NetworkConfig())
    D, C, T = 8, 3, 10
    mp = learner.meta_init(jax.random.PRNGKey(0), TaskSpec(D, C))
    xs = jax.random.normal(jax.random.PRNGKey(1), (T, D))
    y1 = np.zeros(T, np.int32)
    y2 = np.full(T, 2, np.int32)
    k = jax.random.PRNGKey(2)
    r1 = run_episode(learner, mp, xs, y1, k, C)
    r2 = run_episode(learner, mp, xs, y2, k, C)
    np.testing.assert_array_equal(r1.logits[0], r2.logits[0])  # nothing fed back yet
    assert not np.allclose(r1.logits[-1], r2.logits[-1])


def test_config_validation():
    with pytest.raises(ValueError, match="output_channel"):
        NetworkConfig(output_channel=8)
    with pytest.raises(ValueError, match="fast"):
        NetworkConfig(impl="fast", cell=CellConfig(layer_norm=True))
    with pytest.raises(ValueError, match="impl"):
        NetworkConfig(impl="cuda")
    with pytest.raises(ValueError, match="'fused' is invalid with cell.layer_norm"):
        NetworkConfig(impl="fused", cell=CellConfig(layer_norm=True))
    with pytest.raises(ValueError, match="'fused' needs cell.hidden 16"):
        NetworkConfig(impl="fused", cell=CellConfig(hidden=8))
    with pytest.raises(ValueError, match="matmul_dtype float32"):
        NetworkConfig(impl="fused", cell=CellConfig(matmul_dtype="bfloat16"))


def _two_steps(cfg, D=6, C=3):
    from vsml_jax.learners.base import Feedback
    from vsml_jax.vsml.network import init_network_params, init_network_state, network_step

    params = init_network_params(jax.random.PRNGKey(0), cfg, len(cfg.hidden_layers) + 1)
    state = init_network_state(jax.random.PRNGKey(1), cfg, D, C)
    x = jax.random.normal(jax.random.PRNGKey(2), (D,))
    fb = Feedback.zeros(C)
    return params, state, x, fb, jax.jit(network_step, static_argnums=0)


def test_backward_pass_skips_the_top_down_sweep_on_the_first_step():
    """Step 0 has no previous example: with backward_pass the state after it equals the
    state of the bottom-up sweep alone (the network without a backward pass)."""
    with_bp = NetworkConfig(hidden_layers=(4,), backward_pass=True)
    without = NetworkConfig(hidden_layers=(4,), backward_pass=False)
    params, state, x, fb, step = _two_steps(with_bp)
    s1, logits1 = step(with_bp, params, state, x, fb.error, fb.label)
    s2, logits2 = step(without, params, state, x, fb.error, fb.label)
    # (two programs: XLA may round a fused sum differently, by an ulp)
    np.testing.assert_allclose(logits1, logits2, rtol=1e-6, atol=1e-7)
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # with feedback (any later step) the sweep runs and changes the outcome
    err = jax.numpy.array([0.2, -0.3, 0.1])
    _, l_bp = step(with_bp, params, s1, x, err, jax.numpy.array([0.0, 1.0, 0.0]))
    _, l_no = step(without, params, s1, x, jax.numpy.zeros(3), jax.numpy.zeros(3))
    assert not np.allclose(l_bp, l_no)


def test_forward_sweep_feedback_false_feeds_lower_layers_zeros():
    """After the top-down sweep, the bottom-up sweep's lower layers read zeros, so their
    state then is that of a sweep whose stored backward messages were zero."""
    cfg = NetworkConfig(hidden_layers=(4,), backward_pass=True, forward_sweep_feedback=False)
    params, state, x, fb, step = _two_steps(cfg)
    s1, _ = step(cfg, params, state, x, fb.error, fb.label)
    err, lab = jax.numpy.array([0.2, -0.3, 0.1]), jax.numpy.array([0.0, 1.0, 0.0])
    zeroed = s1.replace(bwd_msgs=tuple(jax.numpy.zeros_like(b) for b in s1.bwd_msgs))
    a, la = step(cfg, params, s1, x, err, lab)
    b, lb = step(cfg, params, zeroed, x, err, lab)
    np.testing.assert_allclose(la, lb, rtol=1e-6, atol=1e-6)  # stored messages never read
    paper = NetworkConfig(hidden_layers=(4,), backward_pass=True)
    _, lp = step(paper, params, s1, x, err, lab)
    assert not np.allclose(la, lp)
