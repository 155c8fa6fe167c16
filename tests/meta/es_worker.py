"""Run a few sharded ES generations of VSML and save the means (test helper).

Used by ``test_sharding.py``, in-process on one device and in fresh subprocesses, so
that the number of CPU devices (``XLA_FLAGS``) and processes (``jax.distributed``) can
differ per run:

    python -m tests.meta.es_worker OUT.npz --mesh all|one

Saves the initial and final ES mean, the per-generation meta-loss, the population size
and how many members' fitness each device holds, and whether ``check_population`` refused a
population that does not divide over the mesh.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from vsml_jax.config import ESConfig
from vsml_jax.data.device import to_device
from vsml_jax.data.episodes import EpisodeSpec
from vsml_jax.data.sources import load_split
from vsml_jax.learners.base import TaskSpec
from vsml_jax.learners.vsml import vsml
from vsml_jax.meta import es
from vsml_jax.runtime.devices import (
    check_population,
    maybe_initialize_distributed,
    population_mesh,
    replicate,
    replicated,
    to_host,
)
from vsml_jax.vsml.network import NetworkConfig


def run(out, mesh: str, generations: int = 3) -> None:
    """The generations on ``jax.devices()`` (``mesh="all"``) or on the first device only."""
    devices = jax.devices() if mesh == "all" else jax.devices()[:1]
    mesh = population_mesh(devices)

    data = replicate(to_device([load_split("sum", "train", num_examples=512)]), mesh, readonly=True)
    spec = EpisodeSpec(length=12, input_dim=6, num_classes=2, projection_prob=1.0)
    learner = vsml(NetworkConfig())
    meta = learner.meta_init(jax.random.PRNGKey(0), TaskSpec(6, 2))
    strategy = es.make_strategy(ESConfig(population_pairs=8), meta)
    evaluate = es.make_evaluate(learner, data, spec, 2, mesh)
    block = es.make_train_block(es.make_generation(strategy, evaluate), generations)
    rep = replicated(mesh)
    block = jax.jit(block, out_shardings=(rep, rep))
    state = replicate(to_host(es.init_strategy(strategy, jax.random.PRNGKey(1), meta)), mesh)
    mean0 = to_host(state.mean)
    # where the population's fitness lives: evaluate copies of the initial meta-parameters
    size = strategy.population_size
    population = jax.jit(
        lambda meta: jax.tree.map(lambda x: jnp.broadcast_to(x, (size, *x.shape)), meta)
    )(replicate(meta, mesh))
    fitness = jax.jit(evaluate)(population, jax.random.PRNGKey(3))
    check_population(size, mesh)
    try:
        check_population(mesh.size + 1, mesh)
        rejects = False
    except ValueError:
        rejects = True
    state, metrics = block(state, jax.random.PRNGKey(2), 0)
    mean = to_host(state.mean)
    if jax.process_index() == 0:
        np.savez(
            out,
            mean=mean,
            mean0=mean0,
            meta_loss=to_host(metrics["meta_loss"]),
            population_size=size,
            fitness_shard=fitness.sharding.shard_shape(fitness.shape)[0],
            rejects_nondividing=rejects,
        )
        print(
            "devices",
            jax.device_count(),
            "processes",
            jax.process_count(),
            "loss",
            to_host(metrics["meta_loss"]).tolist(),
            flush=True,
        )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--mesh", choices=["all", "one"], default="all")
    p.add_argument("--generations", type=int, default=3)
    args = p.parse_args()
    maybe_initialize_distributed()
    run(args.out, args.mesh, args.generations)


if __name__ == "__main__":
    main()
