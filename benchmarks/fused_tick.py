"""One LSTM tick of the dense VSML grid: XLA's fast path against the fused CPU kernel.

    python -m benchmarks.fused_tick [--grid 784x10] [--ticks 100] [--repeats 5] [--devices 1]

Times, each in a ``fori_loop`` of ``--ticks`` ticks, the three in interleaved rounds,
pinned to ``--devices`` cores:

- ``xla``: the fast path's tick (:func:`vsml_jax.vsml.cell.lstm_update_grid` with the
  row and column terms of ``layers.dense_fast``);
- ``fused``: the same tick on the fused kernel (:mod:`vsml_jax.vsml.kernel`,
  ``network.impl: fused``), as the library builds it;
- ``fused_rational``: the kernel built with ``-DVSML_RATIONAL_TANH``, i.e. with XLA's own
  gate arithmetic (its tanh polynomial): what the fusion alone buys.

Prints one JSON line per implementation: microseconds per tick (median over rounds) and
the largest absolute difference of ``h`` and ``c`` from the XLA tick after ``--ticks``
ticks; exits 1 if one exceeds ``--tol``, 2 if the kernel cannot be built.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="784x10", help="A x B of the VSML layer")
    p.add_argument("--ticks", type=int, default=100, help="ticks per timed call")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    p.add_argument("--devices", type=int, default=1, help="cores to pin to (0: all)")
    p.add_argument("--tol", type=float, default=1e-4, help="largest |h|, |c| difference")
    args = p.parse_args(argv)
    try:
        A, B = (int(x) for x in args.grid.lower().split("x"))
    except ValueError:
        p.error(f"--grid must look like 784x10, got {args.grid!r}")
    for name in ("ticks", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if A < 1 or B < 1:
        p.error(f"--grid must be positive, got {args.grid!r}")
    cores = sorted(os.sched_getaffinity(0))
    if not 0 <= args.devices <= len(cores):
        p.error(f"--devices {args.devices}: only {len(cores)} usable cores here")
    if args.devices:
        from benchmarks.bench import pin_cores

        pin_cores(args.devices)
    from vsml_jax.runtime.devices import prefer_wide_cpu_vectors

    prefer_wide_cpu_vectors()  # as training does
    import ctypes

    import jax
    import jax.numpy as jnp
    from jax import lax

    from vsml_jax.vsml import kernel
    from vsml_jax.vsml.cell import CellConfig, CellState, init_cell_params, lstm_update_grid

    flags = (*kernel.FLAGS, "-DVSML_RATIONAL_TANH")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if not kernel.available():
                raise kernel.KernelUnavailable(kernel._load())
            lib = ctypes.CDLL(str(kernel.build(Path(tmp) / "rational.so", flags)))
        except kernel.KernelUnavailable as e:
            print(f"fused_tick: {e}", file=sys.stderr)
            return 2
    jax.ffi.register_ffi_target(
        "vsml_bench_rational", jax.ffi.pycapsule(lib.VsmlLstmGrid), platform="cpu"
    )

    cfg = CellConfig()
    H = cfg.hidden
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    params = init_cell_params(k[0], cfg)
    # the fast path's row and column terms, from random messages
    rows = params.w_in[: cfg.message].T @ jax.random.normal(k[1], (cfg.message, A))
    cols = params.w_in[cfg.message :].T @ jax.random.normal(k[2], (cfg.message, B))
    state = CellState(
        h=0.5 * jax.random.normal(k[3], (H, B, A)), c=jax.random.normal(k[4], (H, B, A))
    )

    def xla_tick(s):
        return lstm_update_grid(params, s, rows[:, None, :] + cols[:, :, None])

    def rational_tick(s):
        out = jax.ShapeDtypeStruct(s.h.shape, jnp.float32)
        call = jax.ffi.ffi_call(
            "vsml_bench_rational", (out, out), input_output_aliases={1: 0, 2: 1}
        )
        return CellState(*call(params.w_h.T, s.h, s.c, rows, cols, params.b))

    ticks = {
        "xla": xla_tick,
        "fused": lambda s: kernel.lstm_update_grid_fused(params, s, rows, cols),
        "fused_rational": rational_tick,
    }
    run = {
        name: jax.jit(lambda s, t=tick: lax.fori_loop(0, args.ticks, lambda i, s: t(s), s))
        for name, tick in ticks.items()
    }
    final = {name: jax.block_until_ready(f(state)) for name, f in run.items()}  # compiles
    times = {name: [] for name in run}
    for _ in range(args.repeats):
        for name, f in run.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(state))
            times[name].append((time.perf_counter() - t0) / args.ticks * 1e6)
    worst = 0.0
    for name in run:
        dh = float(jnp.abs(final[name].h - final["xla"].h).max())
        dc = float(jnp.abs(final[name].c - final["xla"].c).max())
        worst = max(worst, dh, dc)
        line = {"impl": name, "grid": f"{A}x{B}", "ticks": args.ticks}
        line |= {"us_per_tick": statistics.median(times[name]), "max_abs_diff_h": dh}
        line |= {"max_abs_diff_c": dc, "cores": len(os.sched_getaffinity(0))}
        print(json.dumps(line), flush=True)
    if not worst <= args.tol:
        print(f"fused_tick: a kernel differs from the XLA tick by {worst:.2e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
