"""Throughput of VSML population evaluation: the fused kernel, the fast and the direct path.

    python -m benchmarks.bench [--grid 784x10] [--populations 8 32] [--T 100] [--repeats 5]
                               [--impls fused fast direct] [--devices N] [--generation]
                               [--eval-batch B]

Prints one JSON line per measurement with ``impl``, ``population``, ``T``,
``member_steps_per_s`` (member-steps: one example through one population
member's network, all micro-ticks included), ``peak_rss_mb`` and the device.
Timing starts after compilation; the median of ``--repeats`` runs is reported.
Each measurement runs in a fresh subprocess so that peak RSS is its own.
``--devices N`` pins that subprocess to N cores with one XLA device each (``1``: the
single-core numbers); ``--generation`` times whole ES generations (ask, evaluate,
tell) and adds ``generations_per_s``. ``--grid 32x10 --populations 128 --generation``
is the quickstart configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

SKIPPED = 3  # exit status of a --one measurement that cannot run here (no fused kernel)


def pin_cores(devices: int) -> None:
    """Restrict this process to its first ``devices`` usable cores (before JAX starts)."""
    cores = sorted(os.sched_getaffinity(0))
    if devices > len(cores):
        raise ValueError(f"--devices {devices}: only {len(cores)} usable cores here")
    os.sched_setaffinity(0, cores[:devices])


def setup(impl: str, population: int, T: int, A: int, B: int, eval_batch: int = 0):
    """The benchmarked problem, after the CPU devices are configured: ``(strategy, state,
    evaluate, data)`` for a population of the A x B VSML layer on MNIST-train episodes of
    T steps (a random projection on half of the tasks when A = 784, as in the paper;
    otherwise on every task), sharded over all devices."""
    import jax

    from vsml_jax.config import ESConfig
    from vsml_jax.data import EpisodeSpec, load_split, to_device
    from vsml_jax.learners.base import TaskSpec
    from vsml_jax.learners.vsml import vsml
    from vsml_jax.meta import es
    from vsml_jax.runtime.devices import check_population, population_mesh, replicate
    from vsml_jax.vsml.network import NetworkConfig

    mesh = population_mesh()
    check_population(population, mesh)
    data = replicate(to_device([load_split("mnist", "train")]), mesh, readonly=True)
    spec = EpisodeSpec(
        length=T, input_dim=A, num_classes=B, projection_prob=0.5 if A == 784 else 1.0
    )
    learner = vsml(NetworkConfig(impl=impl))
    meta = learner.meta_init(jax.random.PRNGKey(0), TaskSpec(A, B))
    strategy = es.make_strategy(ESConfig(population_pairs=population // 2), meta)
    state = es.init_strategy(strategy, jax.random.PRNGKey(1), meta)
    evaluate = es.make_evaluate(learner, data, spec, B, mesh, eval_batch)
    return strategy, state, evaluate, data


def measure(
    impl: str,
    population: int,
    T: int,
    A: int,
    B: int,
    repeats: int,
    generation: bool,
    devices: int = 0,
    eval_batch: int = 0,
) -> dict:
    from vsml_jax.runtime.devices import configure_cpu_devices

    if devices:
        pin_cores(devices)
    # as training does: a device per (pinned) core on CPUs
    configure_cpu_devices(count=devices, divides=population)
    import jax

    from vsml_jax.meta import es

    strategy, state, evaluate, data = setup(impl, population, T, A, B, eval_batch)
    # the dataset is an argument of the compiled program, as in training
    if generation:  # the whole ES generation: ask, evaluate, tell
        fn = jax.jit(es.make_generation(strategy, evaluate))
        run = lambda k: fn(state, k, data)[1]["meta_loss"]
    else:
        members, _ = strategy.ask(jax.random.PRNGKey(2), state, strategy.default_params)
        fn = jax.jit(evaluate)
        run = lambda k: fn(members, k, data)
    t0 = time.perf_counter()
    jax.block_until_ready(run(jax.random.PRNGKey(3)))
    compile_s = time.perf_counter() - t0
    times, cpu = [], []
    for i in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(run(jax.random.PRNGKey(10 + i)))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    med = statistics.median(times)
    extra = {"generations_per_s": 1 / med} if generation else {}
    return {
        "impl": impl,
        "population": population,
        "T": T,
        "grid": f"{A}x{B}",
        "what": "generation" if generation else "evaluate",
        "seconds_median": med,
        "seconds_min": min(times),
        "member_steps_per_s": population * T / med,
        # CPU seconds this process used per call: less sensitive than wall time to other
        # jobs on a shared machine (with --devices 1, about wall time when it is idle)
        "cpu_s_median": statistics.median(cpu),
        "compile_s": compile_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "devices": f"{jax.device_count()}x {jax.devices()[0].device_kind}",
        "cores": len(os.sched_getaffinity(0)),
        "eval_batch": eval_batch,
        "repeats": repeats,
        **extra,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="784x10", help="A x B of the VSML layer")
    p.add_argument(
        "--impls",
        nargs="+",
        default=["fused", "fast", "direct"],
        choices=["fused", "fast", "direct"],
    )
    p.add_argument("--populations", nargs="+", type=int, default=[8, 32])
    p.add_argument("--T", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--devices",
        type=int,
        default=0,
        help="pin each measurement to this many cores, one XLA device each "
        "(0: every usable core, as training does; 1: single-core numbers)",
    )
    p.add_argument(
        "--eval-batch",
        type=int,
        default=0,
        help="members each device evaluates at once (es.eval_batch; 0: platform default)",
    )
    p.add_argument(
        "--generation",
        action="store_true",
        help="time a whole ES generation (ask/evaluate/tell) instead of evaluation",
    )
    p.add_argument("--one", nargs=2, metavar=("IMPL", "POP"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        A, B = (int(x) for x in args.grid.lower().split("x"))
        if A < 1 or B < 1:
            raise ValueError
    except ValueError:
        p.error(f"--grid: expected AxB with positive integers, e.g. 784x10; got {args.grid!r}")
    for name, value in (("--T", args.T), ("--repeats", args.repeats)):
        if value < 1:
            p.error(f"{name} must be >= 1, got {value}")
    for name, value in (("--devices", args.devices), ("--eval-batch", args.eval_batch)):
        if value < 0:
            p.error(f"{name} must be >= 0, got {value}")
    if args.devices > len(os.sched_getaffinity(0)):
        p.error(f"--devices {args.devices}: only {len(os.sched_getaffinity(0))} usable cores here")
    bad = [n for n in args.populations if n < 2 or n % 2]
    if bad:
        p.error(f"--populations must be even and >= 2 (antithetic pairs), got {bad}")
    if args.one:
        impl, pop = args.one[0], int(args.one[1])
        try:
            row = measure(
                impl,
                pop,
                args.T,
                A,
                B,
                args.repeats,
                args.generation,
                args.devices,
                args.eval_batch,
            )
            print(json.dumps(row))
        except ValueError as e:  # e.g. a population that does not divide over the devices
            print(f"error: {e}", file=sys.stderr)
            return 2
        except RuntimeError as e:
            from vsml_jax.vsml.kernel import KernelUnavailable

            if not isinstance(e, KernelUnavailable):
                raise
            print(f"skipped: {e}", file=sys.stderr)  # no fused kernel on this machine
            return SKIPPED
        return 0
    for impl in args.impls:
        for pop in args.populations:
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.bench",
                "--one",
                impl,
                str(pop),
                "--grid",
                args.grid,
                "--T",
                str(args.T),
                "--repeats",
                str(args.repeats),
                "--devices",
                str(args.devices),
                "--eval-batch",
                str(args.eval_batch),
            ]
            if args.generation:
                cmd.append("--generation")
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode == SKIPPED:
                print(out.stderr.strip().splitlines()[-1], file=sys.stderr)
                break  # the other populations of this impl would be skipped too
            if out.returncode:
                errors = [x for x in out.stderr.splitlines() if x.startswith("error: ")]
                print(errors[-1] if errors else out.stderr, file=sys.stderr)
                return out.returncode
            print(out.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
