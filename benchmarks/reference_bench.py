"""The paper's own implementation, timed the way ``benchmarks.bench`` times this one.

    python -m benchmarks.reference_bench --ref-dir DIR [--population 32] [--T 100]
                                         [--repeats 5] [--devices 1]

``DIR`` is a checkout of the paper's code (github.com/louiskirsch/vsml-neurips2021,
commit 5b696c9 was measured), which is not part of this project and is not vendored: this
script only imports its ``models.VSMLRNN`` (with its ``configs/default.yaml``, the paper's
784x10 dense layer, hidden 16, messages 8, 2 micro-ticks) and calls it as its
``experiment.Experiment._es_grads`` does: ``vmap`` over antithetic pairs, each pair one
forward episode of ``params + sigma eps`` and one of ``params - sigma eps``, batch 1.
Only the forward evaluation is timed, as in ``benchmarks.bench`` (member-steps: one
example through one member's network). The inputs are random normal images with random
labels: the cost does not depend on the values.

It needs the reference's own stack, not this project's, in a separate environment::

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install jax==0.4.30 jaxlib==0.4.30 dm-haiku==0.0.12 \
        "numpy<2" optax==0.2.3 chex==0.1.86 pyyaml
    /tmp/refvenv/bin/python -m benchmarks.reference_bench --ref-dir vsml-neurips2021

Prints one JSON line with the keys of ``benchmarks.bench`` (``impl`` is
``"reference"``); run it once per population, so that ``peak_rss_mb`` is that run's own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

REF_FILES = ("models.py", "vsml_layers.py", "recurrent.py", "config.py", "configs/default.yaml")


def missing_files(ref_dir: str) -> list[str]:
    return [f for f in REF_FILES if not os.path.isfile(os.path.join(ref_dir, f))]


def load_reference(ref_dir: str):
    """Import the reference's ``models`` and fill its global config from its defaults."""
    import haiku as hk
    import yaml

    # the reference predates haiku's split_rng argument (and uses no randomness in vmap)
    hk.vmap.require_split_rng = False
    sys.path.insert(0, os.path.abspath(ref_dir))
    import config
    import models

    with open(os.path.join(ref_dir, "configs", "default.yaml")) as f:
        config.GLOBAL_CONFIG.update(yaml.safe_load(f))
    return models, config.GLOBAL_CONFIG


def measure(ref_dir: str, population: int, T: int, repeats: int) -> dict:
    models, cfg = load_reference(ref_dir)
    import haiku as hk
    import jax
    import jax.numpy as jnp

    sigma, num_classes = cfg["optimizer"]["noise_std"], 10

    def inner_loss(logits, labels, axis=None):  # experiment.Experiment._inner_loss
        return (-jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1)).mean(axis=axis)

    def forward_fn(inputs, labels):  # experiment.Experiment._forward_fn, VSMLRNN branch
        specs = [models.create_spec({"type": "dense"})]
        specs = models.complete_specs(specs, inputs.shape[2:], labels.shape[-1])
        return models.VSMLRNN(layer_specs=specs, loss_func=inner_loss)(inputs, labels)

    forward = hk.transform(forward_fn)
    k_data, k_init = jax.random.split(jax.random.PRNGKey(0))
    pairs = population // 2
    images = jax.random.normal(k_data, (pairs, T, 1, 28, 28, 1))
    labels = jax.nn.one_hot(
        jax.random.randint(jax.random.fold_in(k_data, 1), (pairs, T, 1), 0, num_classes),
        num_classes,
    )
    params = forward.init(k_init, images[0], labels[0])

    def pair_losses(params, images, labels, rng):  # the forward half of _es_eval
        leaves, treedef = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(rng, len(leaves) + 1)
        eps = [sigma * jax.random.normal(k, x.shape) for k, x in zip(keys[1:], leaves)]
        pos = treedef.unflatten([x + e for x, e in zip(leaves, eps)])
        neg = treedef.unflatten([x - e for x, e in zip(leaves, eps)])
        loss = lambda p: inner_loss(forward.apply(p, keys[0], images, labels), labels)
        return jnp.stack([loss(pos), loss(neg)])

    evaluate = jax.jit(jax.vmap(pair_losses, in_axes=(None, 0, 0, 0)))
    run = lambda i: evaluate(params, images, labels, jax.random.split(jax.random.PRNGKey(i), pairs))
    t0 = time.perf_counter()
    jax.block_until_ready(run(0))
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run(10 + i))
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {
        "impl": "reference",
        "population": population,
        "T": T,
        "grid": "784x10",
        "what": "evaluate",
        "seconds_median": med,
        "seconds_min": min(times),
        "member_steps_per_s": population * T / med,
        "compile_s": compile_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "devices": f"{jax.device_count()}x {jax.devices()[0].device_kind}",
        "cores": len(os.sched_getaffinity(0)),
        "jax": jax.__version__,
        "repeats": repeats,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref-dir", required=True, help="a checkout of the paper's code")
    p.add_argument("--population", type=int, default=32)
    p.add_argument("--T", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--devices", type=int, default=1, help="cores to pin to (0: all)")
    args = p.parse_args(argv)
    if args.population < 2 or args.population % 2:
        p.error(f"--population must be even and >= 2 (antithetic pairs), got {args.population}")
    for name, value in (("--T", args.T), ("--repeats", args.repeats)):
        if value < 1:
            p.error(f"{name} must be >= 1, got {value}")
    cores = sorted(os.sched_getaffinity(0))
    if not 0 <= args.devices <= len(cores):
        p.error(f"--devices {args.devices}: only {len(cores)} usable cores here")
    missing = missing_files(args.ref_dir)
    if missing:
        p.error(
            f"--ref-dir {args.ref_dir} is not a checkout of the paper's code (no "
            f"{', '.join(missing)}); clone github.com/louiskirsch/vsml-neurips2021 there"
        )
    if args.devices:
        from benchmarks.bench import pin_cores

        pin_cores(args.devices)
    print(json.dumps(measure(args.ref_dir, args.population, args.T, args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
