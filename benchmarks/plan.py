"""Plan a TPU pod run without a TPU: compile the real training program for a TPU topology.

    python -m benchmarks.plan --config experiments/es_mnist/configs/es_mnist.yaml --topology v5e:4x4
    python -m benchmarks.plan --config experiments/es_mnist/configs/es_mnist.yaml \\
        --topology v5e:2x2 --num-slices 2 --set es.population_pairs=512
    python -m benchmarks.plan --config experiments/cross_dataset/configs/cross_dataset_paper.yaml \\
        --topology v5e:4x4 --las vsml,maml@grad
    python -m benchmarks.plan --config experiments/la_cloning/configs/la_cloning_paper.yaml \\
        --topology v5e:2x2

The training block of the config (``generations_per_call`` ES generations or meta-gradient
steps in one program) is built by :func:`vsml_jax.train.build_job` and
:func:`~vsml_jax.train.compiled_block`, the functions ``train`` itself runs, over a
population mesh of the topology's devices, and compiled
ahead of time by XLA's TPU compiler (``libtpu``, the ``tpu`` extra: ``pip install -e
'.[tpu]'``) on this CPU-only machine. The dataset is abstract (shapes only, from
:data:`TRAIN_SPLITS`), so no data need be present.

What it prints, per chip (every supported topology has one device per chip; v4 and v5p
in megacore mode):

- the compiler's memory analysis (argument, output and temporary bytes) against the chip's
  HBM, and whether it fits (an over-sized program fails to compile; that is reported);
- flops and bytes accessed per generation (per step for meta-gradients). XLA's cost
  analysis counts each loop body once, so the per-step function (``online_step`` vmapped
  over the chip's members, or its forward and backward pass for meta-gradients) is
  compiled on its own and scaled by the episode length: ``per generation = block - step +
  T * step``;
- roofline seconds per generation, ``flops / peak`` and ``bytes / HBM bandwidth`` with
  the peak numbers of :data:`CHIPS`, their maximum as the estimate, and that times the
  run's generations (meta-training only: meta-tests, compilation and checkpoints are not
  counted);
- the matmul precision (``network.cell.precision``) and the step's cost at each setting;
- one JSON line (``plan: {...}``) with all of it.

These are compiler estimates, not measurements: the roofline is a lower bound of the time
(the step is mostly elementwise vector work, which runs below the MXU's peak).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import math
import os
import sys
from typing import NamedTuple

INSTALL = "pip install -e '.[tpu]'"


class PlanError(ValueError):
    """Bad input to the plan (topology, config), or libtpu missing."""


class Chip(NamedTuple):
    """Peak numbers of one TPU chip, as Google Cloud's TPU documentation states them."""

    name: str
    hbm_bytes: int  # HBM per chip
    peak_flops: float  # dense bf16 matmul flop/s per chip (the MXUs)
    hbm_bandwidth: float  # bytes/s per chip


GiB = 2**30
CHIPS = {
    "v4": Chip("TPU v4", 32 * GiB, 275e12, 1.2e12),
    "v5e": Chip("TPU v5e", 16 * GiB, 197e12, 8.19e11),
    "v5p": Chip("TPU v5p", 95 * GiB, 459e12, 2.765e12),
    "v6e": Chip("TPU v6e", 32 * GiB, 918e12, 1.64e12),
}
MEGACORE = ("v4", "v5p")  # two TensorCores per chip: planned as one device per chip

# the train splits as the data layer loads them: (examples, (H, W, C), float images)
TRAIN_SPLITS = {
    "mnist": (60_000, (28, 28, 1), False, 10),
    "fashion_mnist": (60_000, (28, 28, 1), False, 10),
    "kmnist": (60_000, (28, 28, 1), False, 10),
    "emnist": (112_800, (28, 28, 1), False, 47),
    "cifar10": (50_000, (32, 32, 3), False, 10),
    "omniglot": (19_280, (105, 105, 3), False, 964),
    "random": (20, (28, 28, 1), True, 10),
    "sum": (10_000, (28, 28, 1), True, 2),
}


# --------------------------------------------------------------------------- topology


def have_libtpu() -> bool:
    return importlib.util.find_spec("libtpu") is not None


def topology(name: str, num_slices: int = 1):
    """The devices of TPU topology ``name`` (e.g. ``v5e:4x4``, ``v4:2x2x2``), compiled for
    without a TPU."""
    if not have_libtpu():
        raise PlanError(f"the plan compiles with libtpu, which is not installed: {INSTALL}")
    gen, _, dims = name.partition(":")
    if gen not in CHIPS or not dims:
        raise PlanError(
            f"unknown topology {name!r}; use GENERATION:DIMS with GENERATION one of "
            f"{', '.join(CHIPS)}, e.g. v5e:2x2, v5e:4x4, v4:2x2x2"
        )
    try:
        chips = math.prod(int(d) for d in dims.split("x"))
    except ValueError:
        raise PlanError(f"topology {name!r}: DIMS must be like 2x2 or 2x2x2") from None
    if num_slices < 1:
        raise PlanError(f"--num-slices must be >= 1, got {num_slices}")
    kwargs = {}
    if gen in MEGACORE:
        kwargs["chip_config_name"] = "megacore"
    if chips == 1:
        kwargs["chips_per_host_bounds"] = [1, 1, 1]
    if num_slices > 1:
        kwargs["num_slices"] = num_slices
    # libtpu looks for a TPU VM's metadata and locks /tmp/libtpu_lockfile against a second
    # process; deviceless compilation touches no TPU, so plans (and tests) may run side by side
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies

    try:
        topo = topologies.get_topology_desc(platform="tpu", topology_name=name, **kwargs)
    except Exception as e:  # noqa: BLE001 - libtpu's errors are XlaRuntimeError and friends
        first = " ".join(str(e).split())[:200]
        raise PlanError(f"libtpu does not know topology {name!r}: {first}") from None
    if len(topo.devices) != chips * num_slices:
        raise PlanError(
            f"topology {name!r} x {num_slices} slices gave {len(topo.devices)} devices, "
            f"not one per chip ({chips * num_slices})"
        )
    return topo, CHIPS[gen]


# --------------------------------------------------------------------------- programs


def abstract_data(cfg, names, sharding):
    """A :class:`~vsml_jax.data.device.DeviceDataset` of shapes only: what
    :func:`vsml_jax.build.load_data` would place for train splits ``names``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from vsml_jax.data.device import DeviceDataset

    d = cfg.data
    sizes, shapes, floats, classes = [], set(), False, []
    for name in names:
        if name not in TRAIN_SPLITS:
            raise PlanError(
                f"the plan knows the train splits of {', '.join(TRAIN_SPLITS)}, not {name!r}"
            )
        n, (h, w, c), is_float, k = TRAIN_SPLITS[name]
        if d.image_size is not None:
            h, w = d.image_size
        if d.grey:
            c = 1
        sizes.append(n)
        shapes.add((h, w, c))
        floats |= is_float
        classes.append(k if d.max_classes is None else min(k, d.max_classes))
    if len(shapes) != 1:
        raise PlanError(f"datasets {names} have different shapes {shapes}; set data.image_size")
    shape = shapes.pop()
    K, N = len(names), sum(sizes)
    sds = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)  # noqa: E731
    return DeviceDataset(
        images=sds((N, int(np.prod(shape))), jnp.float32 if floats else jnp.uint8),
        labels=sds((N,), jnp.int32),
        offsets=sds((K,), jnp.int32),
        sizes=sds((K,), jnp.int32),
        member_classes=sds((K,), jnp.int32),
        mean=sds((K,), jnp.float32),
        std=sds((K,), jnp.float32),
        scale=sds((K,), jnp.float32),
        num_classes=max(classes),
        input_shape=shape,
        names=tuple(names),
    )


def _cost(compiled) -> tuple[float, float]:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))


def _is_oom(error: Exception) -> bool:
    return "RESOURCE_EXHAUSTED" in str(error) or "exceeds available HBM" in str(error)


def compile_block(cfg, mesh):
    """Compile ``cfg``'s training block over ``mesh`` as ``train`` does. Returns
    ``(compiled or None, oom message or None, (learner, meta_params, trainer))``."""
    import jax
    import jax.numpy as jnp

    from vsml_jax.build import run_key
    from vsml_jax.runtime.devices import replicated
    from vsml_jax.train import build_job, compiled_block

    rep = replicated(mesh)
    data = abstract_data(cfg, cfg.data.train_sets, rep)
    learner, _, meta_params, trainer, _ = build_job(cfg, data, mesh)
    block = compiled_block(trainer, mesh)
    key = run_key(cfg.seed, "es")
    state = jax.eval_shape(trainer.init, meta_params, key)
    sds = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep)  # noqa: E731
    start = jax.ShapeDtypeStruct((), jnp.int32, sharding=rep, weak_type=True)
    args = (jax.tree.map(sds, state), sds(key), start, *trainer.args)
    try:
        return block.trace(*args).lower().compile(), None, (learner, meta_params, trainer)
    except Exception as e:  # noqa: BLE001 - XlaRuntimeError
        if not _is_oom(e):
            raise
        return None, " ".join(str(e).split())[:300], (learner, meta_params, trainer)


def compile_step(cfg, learner, meta_params, members: int, device, precision: str | None = None):
    """The cost of one online step of ``members`` episodes on one device: ES evaluates
    ``online_step`` vmapped over the members (each its own meta-parameters); meta-gradients
    run its forward and backward pass over the batch (shared meta-parameters; with
    ``grad.remat`` the forward pass twice, as the rematerialised scan does)."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import SingleDeviceSharding

    from vsml_jax.build import build_learner, task_spec
    from vsml_jax.episode import online_step
    from vsml_jax.learners.base import Feedback, TaskSpec

    if precision is not None and cfg.learner == "vsml":
        network = dataclasses.replace(
            cfg.network, cell=dataclasses.replace(cfg.network.cell, precision=precision)
        )
        learner = build_learner(dataclasses.replace(cfg, network=network))
    sharding = SingleDeviceSharding(device)
    C = cfg.data.num_classes
    input_dim = cfg.data.input_dim
    if input_dim is None:
        data = abstract_data(cfg, cfg.data.train_sets, None)
        input_dim = task_spec(cfg, data).input_dim
    task = TaskSpec(input_dim=input_dim, num_classes=C)
    key = jax.random.PRNGKey(0)
    carry = jax.eval_shape(
        lambda k: (learner.init(meta_params, task, k), Feedback.zeros(C, jnp.float32)), key
    )

    def batched(tree):
        return jax.tree.map(
            lambda s: jax.ShapeDtypeStruct((members, *s.shape), s.dtype, sharding=sharding), tree
        )

    x = jax.ShapeDtypeStruct((members, input_dim), jnp.float32, sharding=sharding)
    y = jax.ShapeDtypeStruct((members,), jnp.int32, sharding=sharding)
    one_step = lambda p, c, x, y: online_step(learner, p, c, x, y, C)  # noqa: E731
    if cfg.trainer == "es":
        params = batched(jax.eval_shape(lambda: meta_params))
        fn = jax.vmap(one_step)
    else:
        params = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
            jax.eval_shape(lambda: meta_params),
        )
        step = jax.checkpoint(one_step, prevent_cse=False) if cfg.grad.remat else one_step

        def fn(p, c, x, y):
            out, pull = jax.vjp(lambda p, c: jax.vmap(step, (None, 0, 0, 0))(p, c, x, y), p, c)
            return pull(jax.tree.map(jnp.ones_like, out))

    return jax.jit(fn).trace(params, batched(carry), x, y).lower().compile()


# --------------------------------------------------------------------------- the plan


def _episode_length(cfg) -> int:
    from vsml_jax.build import episode_spec

    return episode_spec(cfg, cfg.data.episode_length).length


def plan_run(cfg, topo, chip: Chip, precisions=("default", "highest")) -> dict:
    """The plan of one :class:`~vsml_jax.config.RunConfig` on topology ``topo``."""
    from vsml_jax.runtime.devices import check_population, population_mesh

    mesh = population_mesh(topo.devices)
    devices = mesh.size
    if cfg.trainer == "es":
        check_population(cfg.es.population_size, mesh)
        members = cfg.es.population_size // devices
    else:
        members = cfg.grad.batch_size // devices
    total, K, what = cfg.schedule
    T = _episode_length(cfg)
    compiled, oom, (learner, meta_params, _) = compile_block(cfg, mesh)
    out = {
        "config": cfg.name,
        "learner": cfg.learner,
        "trainer": cfg.trainer,
        "chip": chip.name,
        "devices": devices,
        "members_per_chip": members,
        "episode_length": T,
        "steps": total,
        "unit": what,
        "steps_per_call": K,
        "precision": getattr(getattr(cfg.network, "cell", None), "precision", None)
        if cfg.learner == "vsml"
        else None,
        "hbm_bytes": chip.hbm_bytes,
        "peak_flops": chip.peak_flops,
        "hbm_bandwidth": chip.hbm_bandwidth,
    }
    if compiled is None:
        out.update(fits=False, compile_error=oom)
        return out
    mem = compiled.memory_analysis()
    arg, res, temp = (
        mem.argument_size_in_bytes,
        mem.output_size_in_bytes,
        mem.temp_size_in_bytes,
    )
    alias = getattr(mem, "alias_size_in_bytes", 0)
    peak = arg + res + temp - alias
    block_flops, block_bytes = _cost(compiled)
    step = compile_step(cfg, learner, meta_params, members, topo.devices[0])
    step_flops, step_bytes = _cost(step)
    # the block counts the generation's body once, and inside it the episode's step once
    flops = block_flops - step_flops + T * step_flops
    nbytes = block_bytes - step_bytes + T * step_bytes
    s_compute, s_memory = flops / chip.peak_flops, nbytes / chip.hbm_bandwidth
    per_gen = max(s_compute, s_memory)
    out.update(
        fits=peak <= chip.hbm_bytes,
        argument_bytes=arg,
        output_bytes=res,
        temp_bytes=temp,
        alias_bytes=alias,
        peak_bytes=peak,
        flops_per_step=flops,
        bytes_per_step=nbytes,
        bytes_per_member_step=step_bytes / members,
        flops_per_member_step=step_flops / members,
        s_per_step_compute=s_compute,
        s_per_step_memory=s_memory,
        s_per_step=per_gen,
        run_s=per_gen * total,
    )
    if out["precision"] is not None:
        by = {}
        for p in precisions:
            f, b = (
                (step_flops, step_bytes)
                if p == out["precision"]
                else _cost(compile_step(cfg, learner, meta_params, members, topo.devices[0], p))
            )
            s = max(
                (block_flops - step_flops + T * f) / chip.peak_flops,
                (block_bytes - step_bytes + T * b) / chip.hbm_bandwidth,
            )
            by[p] = {"flops_per_member_step": f / members, "bytes_per_member_step": b / members}
            by[p]["s_per_step"] = s
        out["by_precision"] = by
    return out


def _gb(x: float) -> str:
    return f"{x / 1e9:.2f} GB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def describe(plan: dict) -> str:
    """The human-readable lines of one run's plan."""
    unit = plan["unit"].split(".")[1]
    lines = [
        f"{plan['config']} ({plan['learner']}, {plan['trainer']}): {plan['devices']} chips "
        f"({plan['chip']}), {plan['members_per_chip']} "
        f"{'members' if plan['trainer'] == 'es' else 'episodes'}/chip, "
        f"{plan['episode_length']}-step episodes, {plan['steps']} {unit}s"
    ]
    if not plan["fits"]:
        lines.append(
            f"  does NOT fit: the compiler refused ({plan['compile_error']}); "
            "use more chips or fewer members per chip"
        )
        return "\n".join(lines)
    hbm = plan["hbm_bytes"]
    lines += [
        f"  memory/chip: arguments {_gb(plan['argument_bytes'])}, outputs "
        f"{_gb(plan['output_bytes'])}, temporaries {_gb(plan['temp_bytes'])}; peak "
        f"{_gb(plan['peak_bytes'])} of {_gb(hbm)} HBM: "
        + ("fits" if plan["fits"] else "does NOT fit"),
        f"  per {unit} per chip (loop trip counts applied): {plan['flops_per_step'] / 1e12:.3g} "
        f"Tflop, {plan['bytes_per_step'] / 1e12:.3g} TB accessed; per member-step "
        f"{plan['bytes_per_member_step'] / 1e6:.3g} MB, "
        f"{plan['flops_per_member_step'] / 1e6:.3g} Mflop",
        f"  roofline/{unit}: compute {plan['s_per_step_compute']:.3g} s "
        f"(at {plan['peak_flops'] / 1e12:g} Tflop/s bf16), memory "
        f"{plan['s_per_step_memory']:.3g} s (at {plan['hbm_bandwidth'] / 1e9:g} GB/s) -> "
        f"about {plan['s_per_step']:.3g} s/{unit}; {plan['steps']} {unit}s: "
        f"about {_duration(plan['run_s'])} (meta-training only; compiler estimate)",
    ]
    if plan.get("by_precision"):
        parts = [
            f"{p}: {v['bytes_per_member_step'] / 1e6:.3g} MB, "
            f"{v['flops_per_member_step'] / 1e6:.3g} Mflop per member-step, "
            f"{v['s_per_step']:.3g} s/{unit}"
            for p, v in plan["by_precision"].items()
        ]
        lines.append(
            f"  matmul precision: {plan['precision']} (network.cell.precision); " + "; ".join(parts)
        )
    return "\n".join(lines)


def run_configs(config_path: str, overrides: list[str], las: str | None):
    """The meta-trained runs a preset stands for: itself, each (LA, group) of a
    cross-dataset preset (hand-designed LAs are not meta-trained and are left out), or the
    improvement stages of a la_cloning preset. Each item is ``(run config, how many runs
    of this shape)``."""
    from pathlib import Path

    import yaml

    from vsml_jax.config import HAND_DESIGNED, load_config

    with open(config_path) as f:
        raw = yaml.safe_load(f) or {}
    if "las" not in raw and "base" not in raw:
        return [(load_config(config_path, overrides), 1)]
    if "improve" in raw:
        return _la_cloning_runs(config_path, overrides)
    from experiments.cross_dataset.protocol import ALL_SETS, CrossDatasetConfig, la_config
    from vsml_jax.stages import learner_name

    defaults = Path(__file__).parent.parent / "experiments/cross_dataset/configs/cross_dataset.yaml"
    if las:
        overrides = [*overrides, f"las=[{las}]"]
    cfg = load_config(
        config_path, overrides, CrossDatasetConfig, defaults if defaults.exists() else None
    )
    tests = [t for t in cfg.test_sets if t in TRAIN_SPLITS]
    # as the run does: every task padded to the largest class count of the test sets
    classes = max([TRAIN_SPLITS[t][3] for t in tests] + [cfg.base.data.num_classes])
    base = dataclasses.replace(
        cfg.base, data=dataclasses.replace(cfg.base.data, num_classes=classes)
    )
    cfg = dataclasses.replace(cfg, base=base)
    groups = []
    for entry in cfg.train_sets:
        if entry == "all":
            groups.append(tuple(t for t in tests if t in ALL_SETS))
        elif entry == "loo":
            groups.extend(tuple(x for x in tests if x != held) for held in tests)
        else:
            groups.append(tuple(entry.split("+")))
    groups = list(dict.fromkeys(g for g in groups if g))
    largest = max(groups, key=lambda g: sum(TRAIN_SPLITS[n][0] for n in g))
    return [
        (la_config(cfg, la, largest), len(groups))
        for la in cfg.las
        if learner_name(la) not in HAND_DESIGNED
    ]


def _la_cloning_runs(config_path: str, overrides: list[str]):
    """A la_cloning preset's meta-training from the clone (``improve.trainers``), each run
    as the command builds it. The plan needs only the clone's shapes, which are
    ``meta_init``'s (no clone is read), and XLA's network (``impl: auto`` is the fused
    CPU kernel on an AVX-512 machine)."""
    from pathlib import Path

    from experiments.la_cloning.protocol import LACloningConfig, improve_run_config
    from vsml_jax.config import load_config

    cfg = load_config(config_path, overrides, LACloningConfig)
    if not cfg.improve.trainers:
        raise PlanError(
            f"{config_path} meta-trains nothing (improve.trainers is empty); "
            "add --set improve.trainers=[grad,es]"
        )

    def shapes_only(run):
        return dataclasses.replace(
            run, init_from=None, network=dataclasses.replace(run.network, impl="auto")
        )

    return [
        (shapes_only(improve_run_config(cfg, t, Path("clone"))), 1) for t in cfg.improve.trainers
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config", required=True, help="a run preset, a cross-dataset or a la_cloning preset"
    )
    p.add_argument("--topology", required=True, help="e.g. v5e:1x1, v5e:2x2, v5e:4x4, v4:2x2x2")
    p.add_argument("--num-slices", type=int, default=1, help="multi-slice: slices of TOPOLOGY")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--las", help="cross-dataset presets: plan only these LAs (comma-separated)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from vsml_jax.config import ConfigError

    try:
        runs = run_configs(args.config, args.overrides, args.las)
        topo, chip = topology(args.topology, args.num_slices)
        name = args.topology + (f" x {args.num_slices} slices" if args.num_slices > 1 else "")
        print(f"plan for {name}: compiler estimates from XLA's TPU compiler, no TPU used")
        plans = []
        for cfg, count in runs:
            plan = plan_run(cfg, topo, chip)
            plan.update(topology=args.topology, num_slices=args.num_slices, groups=count)
            print(describe(plan) + (f"\n  x {count} meta-training groups" if count > 1 else ""))
            plans.append(plan)
    except (PlanError, ConfigError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = sum(q.get("run_s", math.nan) * q["groups"] for q in plans)
    fits = all(q["fits"] for q in plans)
    if len(plans) > 1:
        print(f"all meta-training runs: {f'about {_duration(total)}' if fits else 'not all fit'}")
    summary = {"topology": args.topology, "num_slices": args.num_slices, "runs": plans}
    summary["fits"] = fits
    summary["total_run_s"] = total
    print("plan: " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
