"""Record what the paper's own code computes, as small float64 fixtures for the tests.

    /tmp/refvenv/bin/python benchmarks/record_paper_fixtures.py --ref-dir DIR \\
        [--out tests/vsml/fixtures]

``DIR`` is a checkout of the paper's code (github.com/louiskirsch/vsml-neurips2021, commit
5b696c9 was recorded). It is not part of this project and is not vendored: this script only
imports its ``models.VSMLRNN`` and runs it in the reference's own stack, in a separate
environment (the one :mod:`benchmarks.reference_bench` describes)::

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install jax==0.4.30 jaxlib==0.4.30 dm-haiku==0.0.12 \\
        "numpy<2" optax==0.2.3 chex==0.1.86 pyyaml

For each small network below it runs one episode (batch 1) of random inputs and labels in
float64, with the model's parameters perturbed away from their initial values (so that
biases, layer-norm offsets and scales are not trivially 0 or 1), and saves one
``paper_<name>.npz``: the haiku parameters (``param/<module>/<name>``), the initial layer
states the model drew (``state<l>/hidden`` and ``state<l>/cell``, batch axis dropped), the
inputs, the one-hot labels, the per-step logits, and ``meta`` (a JSON string: the
network's settings as the paper's config names them). ``tests/vsml/test_paper_fixtures.py``
checks that this project reproduces them.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys

# name -> (overrides of the paper's configs/default.yaml model section, input shape, classes)
NETWORKS = {
    # configs/default.yaml: one dense layer
    "dense": ({}, (12,), 4),
    # configs/deep.yaml with configs/backward_pass.yaml: two dense layers, layer norm,
    # fed label, the separate backward pass
    "deep_bp": (
        {
            "vsml_rnn": {
                "layer_specs": [{"type": "dense", "out_size": 6}, {"type": "dense"}],
                "backward_pass": True,
                "feed_label": True,
            },
            "sub_rnn": {"layer_norm": True},
        },
        (12,),
        4,
    ),
    # configs/conv.yaml's structure (conv 3x3 stride 2, then dense; backward pass, fed label,
    # layer norm) on a 6x6 image
    "conv_bp": (
        {
            "vsml_rnn": {
                "layer_specs": [
                    {"type": "conv", "kernel_size": 3, "stride": 2, "out_channels": 4},
                    {"type": "dense"},
                ],
                "backward_pass": True,
                "feed_label": True,
            },
            "sub_rnn": {"layer_norm": True},
        },
        (6, 6, 1),
        4,
    ),
    # conv -> conv -> dense with the backward pass and no layer norm: the second conv
    # layer's stride-2 backward message reaches the first (the paper's mask matters)
    "conv_conv_bp": (
        {
            "vsml_rnn": {
                "layer_specs": [
                    {"type": "conv", "kernel_size": 3, "stride": 2, "out_channels": 2},
                    {"type": "conv", "kernel_size": 3, "stride": 2, "out_channels": 2},
                    {"type": "dense"},
                ],
                "backward_pass": True,
                "feed_label": True,
            },
        },
        (6, 6, 1),
        3,
    ),
}
T = 8  # steps per recorded episode
PERTURB = 0.1  # std of the noise added to every parameter


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def record(ref_dir: str, name: str, seed: int = 0) -> dict:
    import haiku as hk
    import jax
    import jax.numpy as jnp
    import numpy as np
    import yaml

    jax.config.update("jax_enable_x64", True)
    hk.vmap.require_split_rng = False  # the reference predates haiku's split_rng argument
    sys.path.insert(0, os.path.abspath(ref_dir))
    import config
    import models

    overrides, shape, num_classes = NETWORKS[name]
    with open(os.path.join(ref_dir, "configs", "default.yaml")) as f:
        default = yaml.safe_load(f)
    config.GLOBAL_CONFIG.clear()
    config.GLOBAL_CONFIG.update(_merge(default, {"model": overrides}))
    model_cfg = config.GLOBAL_CONFIG["model"]

    def inner_loss(logits, labels, axis=None):  # experiment.Experiment._inner_loss
        return (-jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1)).mean(axis=axis)

    drawn = []  # the initial layer states VSMLRNN draws (captured eagerly)
    cls = models.VSMLRNN.__wrapped__  # under the reference's @configurable wrapper
    create = cls._create_layer_state

    def capture(self, spec):
        ls = create(self, spec)
        drawn.append(ls.lstm_state)
        return ls

    cls._create_layer_state = capture

    def forward_fn(inputs, labels):  # experiment.Experiment._forward_fn, VSMLRNN branch
        specs = [models.create_spec(c) for c in model_cfg["vsml_rnn"]["layer_specs"]]
        specs = models.complete_specs(specs, inputs.shape[2:], labels.shape[-1])
        return models.VSMLRNN(layer_specs=specs, loss_func=inner_loss)(inputs, labels)

    forward = hk.transform(forward_fn)
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(T, 1, *shape))
    labels = np.eye(num_classes)[rng.integers(0, num_classes, T)][:, None]
    params = forward.init(jax.random.PRNGKey(seed), inputs, labels)
    params = jax.tree_util.tree_map(
        lambda p: np.asarray(p, np.float64) + PERTURB * rng.normal(size=p.shape), params
    )
    drawn.clear()
    logits = forward.apply(params, jax.random.PRNGKey(seed + 1), inputs, labels)
    cls._create_layer_state = create
    if len(drawn) != len(model_cfg["vsml_rnn"]["layer_specs"]):
        raise RuntimeError(f"captured {len(drawn)} initial layer states, expected one per layer")

    out = {
        "inputs": inputs[:, 0],
        "labels": labels[:, 0],
        "logits": np.asarray(logits, np.float64)[:, 0],
    }
    for module, values in params.items():
        for pname, value in values.items():
            out[f"param/{module}/{pname}"] = np.asarray(value, np.float64)
    for layer, st in enumerate(drawn):
        out[f"state{layer}/hidden"] = np.asarray(st.hidden, np.float64)
        out[f"state{layer}/cell"] = np.asarray(st.cell, np.float64)
    commit = subprocess.run(
        ["git", "-C", ref_dir, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    meta = {
        "name": name,
        "ref_commit": commit or "unknown",
        "model": model_cfg,
        "input_shape": list(shape),
        "num_classes": num_classes,
        "T": T,
        "perturb": PERTURB,
        "seed": seed,
        "jax": jax.__version__,
        "haiku": hk.__version__,
    }
    out["meta"] = np.asarray(json.dumps(meta))
    assert all(np.isfinite(v).all() for k, v in out.items() if k != "meta"), name
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref-dir", required=True, help="a checkout of the paper's code")
    p.add_argument("--out", default=os.path.join("tests", "vsml", "fixtures"))
    p.add_argument("--only", nargs="*", choices=sorted(NETWORKS), help="record only these")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.ref_dir, "models.py")):
        p.error(
            f"--ref-dir {args.ref_dir} is not a checkout of the paper's code (no models.py); "
            "clone github.com/louiskirsch/vsml-neurips2021 there"
        )
    import numpy as np

    os.makedirs(args.out, exist_ok=True)
    for name in args.only or NETWORKS:
        data = record(args.ref_dir, name)
        path = os.path.join(args.out, f"paper_{name}.npz")
        np.savez_compressed(path, **data)
        print(f"{path}: {os.path.getsize(path)} bytes, logits[-1] = {data['logits'][-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
