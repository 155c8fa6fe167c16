"""Devices, hosts and the global population mesh.

The ES population axis is sharded over a 1-D :class:`~jax.sharding.Mesh` named
``'pop'`` that spans every device of every process. The same code runs on one
CPU, on 8 GPUs, or on a multi-host TPU pod: only the device count changes.
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

log = logging.getLogger(__name__)

POP = "pop"


def maybe_initialize_distributed(enabled: bool = False) -> bool:
    """Call ``jax.distributed.initialize()`` when asked to (config or ``$VSML_DISTRIBUTED=1``).

    On TPU pods and SLURM clusters JAX detects the coordinator itself. For manual
    launches set ``JAX_COORDINATOR_ADDRESS`` (e.g. ``127.0.0.1:12345``),
    ``VSML_NUM_PROCESSES`` and ``VSML_PROCESS_ID``.
    """
    enabled = enabled or os.environ.get("VSML_DISTRIBUTED", "0") not in ("", "0", "false")
    if not enabled:
        return False
    if jax.distributed.is_initialized():
        return True
    kwargs = {}
    if "VSML_NUM_PROCESSES" in os.environ:
        if "VSML_PROCESS_ID" not in os.environ:
            raise ValueError("VSML_NUM_PROCESSES is set but VSML_PROCESS_ID is not; set both")
        kwargs["num_processes"] = int(os.environ["VSML_NUM_PROCESSES"])
        kwargs["process_id"] = int(os.environ["VSML_PROCESS_ID"])
    jax.distributed.initialize(**kwargs)
    log.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


def configure_cpu_devices(count: int = 0, divides: int | None = None) -> None:
    """Split the host CPU into ``count`` XLA devices before JAX starts.

    ``count=0`` picks one device per usable core, reduced to the largest number that
    divides ``divides`` (the population or batch size), so the default works on any
    core count. XLA runs small per-member programs on one core per device, so on a
    CPU-only machine sharding the population over one device per core uses every
    core. Accelerator backends ignore this; an explicit ``XLA_FLAGS`` count wins.
    """
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    if not count:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        count = max(d for d in range(1, cores + 1) if divides is None or divides % d == 0)
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as e:  # the backend is already running (e.g. inside tests)
        log.info("cpu_devices left as they are: %s", e)


def population_mesh(devices=None) -> Mesh:
    """A 1-D mesh over all (global) devices with the population axis ``'pop'``."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (POP,), axis_types=(AxisType.Auto,))


def check_population(population_size: int, mesh: Mesh) -> None:
    """The population must split evenly over the mesh's devices."""
    n = mesh.size
    if population_size % n:
        raise ValueError(
            f"population size {population_size} does not divide over {n} devices; "
            f"set es.population_pairs so that 2 * pairs is a multiple of {n}"
        )


def pop_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(POP))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def replicate(tree, mesh: Mesh):
    """Place host values identically on every device of the mesh (works multi-process)."""
    sharding = replicated(mesh)

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(put, tree)


def to_host(tree):
    """Fetch (replicated or fully addressable) arrays to numpy on this process."""

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(x)

    return jax.tree.map(get, tree)
