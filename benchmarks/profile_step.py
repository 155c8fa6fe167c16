"""Where the time of an ES evaluation goes, op by op: XLA's own trace of the compiled step.

    python -m benchmarks.profile_step [--impl fast] [--grid 784x10] [--population 8]
                                      [--T 100] [--calls 2] [--top 15] [--trace-dir DIR]

Evaluates a population at the paper configuration (as ``benchmarks.bench``:
MNIST-train episodes, a random projection on half of the tasks) on one CPU device,
records ``--calls`` evaluations with ``jax.profiler`` and prints, for the ``--top``
XLA ops (fusions, dots) that took the most time, one JSON line each: the op's name as
XLA's optimised HLO spells it, how often it ran, its total and mean microseconds, and
its share of the time spent in ops. Per member-step figures divide by
``population * T * calls``. (XLA picks its dot kernel by program: with a population of
2 it compiled the recurrent matmul to an XNNPACK fusion, slower here than the Eigen dot
it picks from 4 members on, so profile with at least 4.) Run it pinned to one core
(``taskset -c 0``) for per-core numbers; ``XLA_FLAGS=--xla_dump_to=DIR`` shows what each
fusion computes.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import tempfile
from pathlib import Path

# XLA ops whose time is that of the ops in their bodies
_CONTAINERS = ("while", "call", "conditional")


def op_times(trace_dir: Path) -> dict[str, tuple[int, float]]:
    """``{op name: (count, total µs)}`` from a ``jax.profiler`` trace directory (its
    newest trace, if it holds several): the events XLA's CPU runtime records per HLO op
    (they carry ``args.hlo_op``), without the loops and calls that contain other ops, and
    without the executor's, the client's and Python's own events."""
    paths = sorted(trace_dir.glob("plugins/profile/*/*.trace.json.gz"), key=os.path.getmtime)
    if not paths:
        raise FileNotFoundError(f"no jax.profiler trace (*.trace.json.gz) under {trace_dir}")
    events = json.load(gzip.open(paths[-1]))["traceEvents"]
    out: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])
    for e in events:
        op = e.get("args", {}).get("hlo_op")
        if e.get("ph") == "X" and op and not op.startswith(_CONTAINERS):
            out[op][0] += 1
            out[op][1] += e["dur"]
    return {k: (n, t) for k, (n, t) in out.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", default="fast", choices=["fused", "fast", "direct"])
    p.add_argument("--grid", default="784x10", help="A x B of the VSML layer")
    p.add_argument("--population", type=int, default=8, help="members (even)")
    p.add_argument("--T", type=int, default=100, help="episode length")
    p.add_argument("--calls", type=int, default=2, help="evaluations traced")
    p.add_argument("--top", type=int, default=15, help="ops printed")
    p.add_argument("--trace-dir", default=None, help="keep the trace here (default: a tmp dir)")
    args = p.parse_args(argv)
    try:
        A, B = (int(v) for v in args.grid.lower().split("x"))
    except ValueError:
        p.error(f"--grid must look like 784x10, got {args.grid!r}")
    if min(A, B, args.T, args.calls, args.top) < 1:
        p.error("--grid sizes, --T, --calls and --top must be >= 1")
    if args.population < 2 or args.population % 2:
        p.error(f"--population must be even and >= 2 (antithetic pairs), got {args.population}")

    from benchmarks.bench import setup
    from vsml_jax.runtime.devices import configure_cpu_devices

    configure_cpu_devices(count=1)
    import jax

    strategy, state, evaluate, data = setup(args.impl, args.population, args.T, A, B)
    evaluate = jax.jit(evaluate)
    members, _ = strategy.ask(jax.random.PRNGKey(2), state, strategy.default_params)
    jax.block_until_ready(evaluate(members, jax.random.PRNGKey(3), data))  # compile

    with tempfile.TemporaryDirectory() as tmp:
        trace_dir = Path(args.trace_dir or tmp)
        jax.profiler.start_trace(str(trace_dir))
        for i in range(args.calls):
            jax.block_until_ready(evaluate(members, jax.random.PRNGKey(10 + i), data))
        jax.profiler.stop_trace()
        times = op_times(trace_dir)
    total = sum(t for _, t in times.values())
    member_steps = args.population * args.T * args.calls
    for name, (n, t) in sorted(times.items(), key=lambda kv: -kv[1][1])[: args.top]:
        row = {
            "impl": args.impl,
            "op": name,
            "count": n,
            "us_total": round(t),
            "us_mean": round(t / n, 1),
            "us_per_member_step": round(t / member_steps, 1),
            "share": round(t / total, 3),
        }
        print(json.dumps(row), flush=True)
    print(
        json.dumps(
            {
                "impl": args.impl,
                "op": "all ops",
                "us_per_member_step": round(total / member_steps, 1),
                "member_steps_per_s": round(member_steps / total * 1e6),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
