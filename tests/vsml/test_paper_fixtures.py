"""Fidelity against outputs recorded from the paper's own code, in float64.

``tests/vsml/fixtures/paper_*.npz`` were written by ``benchmarks/record_paper_fixtures.py``
(the paper's ``models.VSMLRNN`` in its own jax/haiku stack; see that script): the haiku
parameters, the initial layer states the model drew, random inputs and labels, and the
logits of every step of one episode. Here the same parameters and states are loaded into
this project's network and stepped with the same inputs, the error fed back from its own
logits; the logits must agree to float64 rounding.

Each fixture is also run with a deliberate corruption of the translation (the gate order,
the folding of the paper's forget +5 / input -5 into the bias, the conv backward mask);
each must then disagree, so the comparison really pins what it claims.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vsml_jax.vsml.cell import CellConfig, CellParams, CellState
from vsml_jax.vsml.conv import init_conv_state
from vsml_jax.vsml.network import (
    NetworkConfig,
    NetworkState,
    conv_geometries,
    layer_sizes,
    network_step,
)

FIXTURES = Path(__file__).parent / "fixtures"
LSTM = "param/vsmlrnn/~/sub_rnn/~/custom_lstm/linear/"
SUB = "param/vsmlrnn/~/sub_rnn/~/"


def load(name: str):
    data = dict(np.load(FIXTURES / f"paper_{name}.npz"))
    return data, json.loads(str(data.pop("meta")))


def translate(data, meta, corrupt: str | None = None):
    """The paper's parameters, initial state and settings as this project's.

    The paper's LSTM gates are ordered (input, cell, forget, output) with ``forget + 5`` and
    ``input - 5`` added inside the logistic; here they are (input, forget, cell, output) with
    the constants folded into the bias. Its state ``[A, B, H]`` is ``[H, B, A]`` here.
    """
    model = meta["model"]
    sub, net = model["sub_rnn"], model["vsml_rnn"]
    H, m = sub["slow_size"], sub["msg_size"]

    def reorder(x):
        i, g, f, o = np.split(x, 4, axis=-1)
        return np.concatenate([i, g, f, o] if corrupt == "gate_order" else [i, f, g, o], -1)

    fold = np.repeat([0.0, 0.0, 0.0, 0.0] if corrupt == "bias_fold" else [-5.0, 5.0, 0, 0], H)
    w = reorder(data[LSTM + "w"])
    ln = sub["layer_norm"]
    norm = lambda key, default: (  # noqa: E731
        np.stack([data[SUB + f"layer_norm/{key}"], data[SUB + f"layer_norm_1/{key}"]])
        if ln
        else np.full((2, m), default)
    )
    params = CellParams(
        w_in=w[: 2 * m],
        w_h=w[2 * m :],
        b=reorder(data[LSTM + "b"]) + fold,
        w_fwd=data[SUB + "linear/w"],
        b_fwd=data[SUB + "linear/b"],
        w_bwd=data[SUB + "linear_1/w"],
        b_bwd=data[SUB + "linear_1/b"],
        ln_scale=norm("scale", 1.0),
        ln_bias=norm("offset", 0.0),
    )
    specs = net["layer_specs"]
    convs = [s for s in specs if s["type"] == "conv"]
    dense_sizes = tuple(s["out_size"] for s in specs if s["type"] == "dense" and "out_size" in s)
    shape = tuple(meta["input_shape"])
    cfg = NetworkConfig(
        cell=CellConfig(hidden=H, message=m, layer_norm=ln),
        hidden_layers=dense_sizes,
        num_micro_ticks=net["num_micro_ticks"],
        output_channel=net["output_idx"],
        output_scale=float(net["tanh_bound"]),
        feed_label=net["feed_label"],
        backward_pass=net["backward_pass"],
        conv_channels=tuple(s["out_channels"] for s in convs),
        conv_kernel=convs[0]["kernel_size"] if convs else 3,
        conv_stride=convs[0]["stride"] if convs else 2,
        image_shape=shape if convs else None,
        conv_backward="transpose" if corrupt == "mask" else "paper",
    )
    sizes = layer_sizes(cfg, int(np.prod(shape)), meta["num_classes"])
    cells = []
    for layer in range(len(sizes) - 1):
        h, c = data[f"state{layer}/hidden"], data[f"state{layer}/cell"]
        if layer >= len(convs):  # dense: [A, B, H] there, [H, B, A] here
            h, c = h.T, c.T
        cells.append(CellState(h=h, c=c))
    state = NetworkState(  # the paper's: no messages in flight
        cells=tuple(cells),
        bwd_msgs=tuple(np.zeros((a, m)) for a in sizes[:-1]),
        prev_x=np.zeros(sizes[0]),
        fwd_msgs=tuple(np.zeros((a, m)) for a in sizes[1 : len(convs) + 1]),
    )
    to64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)  # noqa: E731
    return cfg, (to64(params),), to64(state)


# one jitted step for all tests: runs that differ only in parameter values (the gate
# order and bias fold corruptions) reuse the compiled step of the clean run
STEP = jax.jit(network_step, static_argnums=0)
ATOL = 1e-12  # measured agreement: <= 1.1e-15 over the 8 steps of every fixture


def run(data, meta, corrupt=None) -> np.ndarray:
    """The project's logits ``[T, C]`` for the fixture's episode, in float64."""
    with jax.enable_x64(True):
        cfg, params, state = translate(data, meta, corrupt)
        step = STEP
        C = meta["num_classes"]
        error, label = jnp.zeros(C, jnp.float64), jnp.zeros(C, jnp.float64)
        out = []
        for x, y in zip(data["inputs"], data["labels"], strict=True):
            state, logits = step(cfg, params, state, jnp.asarray(x.ravel()), error, label)
            out.append(np.asarray(logits))
            label = jnp.asarray(y)
            error = jax.nn.softmax(logits) - label  # d cross-entropy / d logits
        return np.stack(out)


def check(logits, data):
    np.testing.assert_allclose(logits, data["logits"], rtol=0, atol=ATOL)


# the fast path where it is valid, else (layer norm) the direct one; fast == direct is
# tested on its own (tests/vsml/test_conv.py, test_layers.py, test_network.py)
NAMES = ["dense", "deep_bp", "conv_bp", "conv_conv_bp"]


@pytest.mark.parametrize("name", NAMES)
def test_reproduces_the_papers_code(name):
    data, meta = load(name)
    check(run(data, meta), data)


CORRUPTIONS = [(name, corrupt) for name in NAMES for corrupt in ("gate_order", "bias_fold")]
# the conv backward mask shows only where a conv layer's backward message reaches another
# layer: conv -> conv (there it moves the logits by ~7e-9, far above ATOL)
CORRUPTIONS += [("conv_conv_bp", "mask")]


@pytest.mark.parametrize("name,corrupt", CORRUPTIONS, ids=[f"{n}-{c}" for n, c in CORRUPTIONS])
def test_a_broken_translation_is_caught(name, corrupt):
    data, meta = load(name)
    logits = run(data, meta, corrupt)
    with pytest.raises(AssertionError):
        check(logits, data)


def test_initial_state_scale_matches_the_papers():
    """The random half of a conv layer's initial cell state has the spread of the paper's
    draw: std ``1/sqrt(k)`` (its initializer reads the fan-in off the kernel axis, whatever
    ``C_in``), truncated at two std. (Dense layers: ``1/sqrt(A)``, tests/vsml/test_layers.py.)"""
    data, meta = load("conv_conv_bp")  # conv (C_in 1) -> conv (C_in 2) -> dense
    with jax.enable_x64(True):
        cfg, _, _ = translate(data, meta)
    geoms = conv_geometries(cfg)
    init = jax.jit(lambda key: [init_conv_state(key, cfg.cell, g) for g in geoms])
    r = cfg.cell.num_random
    for layer, cell in enumerate(init(jax.random.PRNGKey(3))):
        theirs = data[f"state{layer}/cell"][..., :r].std()
        mine = np.asarray(cell.c)[..., :r].std()
        assert abs(mine / theirs - 1) < 0.2, (layer, mine, theirs)
        assert abs(mine * np.sqrt(3) / 0.8796 - 1) < 0.2  # 1/sqrt(k), truncated at 2 std
