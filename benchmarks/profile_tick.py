"""Where one micro-tick of a 784x10 VSML layer (hidden 16) spends its time on this CPU.

    python -m benchmarks.profile_tick [--cells 7840] [--grid-a 784] [--ticks 200] [--rounds 5]

Times one tick of the fast path's LSTM update (the recurrent ``[N, 16] @ [16, 64]``
matmul and the gates of ``N = A * B`` cells; the rest of a step is small, see
docs/BENCHMARKS.md) in several formulations, each compiled once and timed in
interleaved rounds (so that a shared machine's load hits all alike), and prints
XLA's cost analysis (FLOPs, bytes accessed, transcendentals) of one tick. Run it
pinned to one core (``taskset -c 0``) for per-core numbers. It compiles with 512-bit
vectors, as training does (``XLA_FLAGS=--xla_cpu_prefer_vector_width=256``: XLA's
default).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=7840, help="A * B cells of the grid")
    p.add_argument("--grid-a", type=int, default=784, help="A of the A x B grid (B = cells / A)")
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--ticks", type=int, default=200, help="ticks per timed call")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    for name in ("cells", "grid_a", "hidden", "ticks", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.cells % args.grid_a:
        p.error(f"--cells {args.cells} is not a multiple of --grid-a {args.grid_a}")
    from vsml_jax.runtime.devices import prefer_wide_cpu_vectors

    prefer_wide_cpu_vectors()  # as training does (XLA_FLAGS can still set a width)
    import jax
    import jax.numpy as jnp

    from vsml_jax.vsml.cell import _gates

    N, H = args.cells, args.hidden
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    h = jax.random.normal(k[0], (N, H))
    c = jax.random.normal(k[1], (N, H))
    w = jax.random.normal(k[2], (H, 4 * H)) / jnp.sqrt(H)
    g = jax.random.normal(k[3], (N, 4 * H))  # the per-cell input part, fixed over ticks
    sig = jax.nn.sigmoid

    def four_gates(z, c):  # main before issue 10: three logistics and a tanh
        i, f, gg, o = jnp.split(z, 4, -1)
        c = sig(f) * c + sig(i) * jnp.tanh(gg)
        return sig(o) * jnp.tanh(c), c

    def four_gates_t(z, c):  # the same in the [H, N] layout (cells minor)
        i, f, gg, o = z[:H], z[H : 2 * H], z[2 * H : 3 * H], z[3 * H :]
        c = sig(f) * c + sig(i) * jnp.tanh(gg)
        return sig(o) * jnp.tanh(c), c

    def one_tanh(z, c):
        s = _gates(z, c)
        return s.h, s.c

    scale = jnp.concatenate([jnp.full((2 * H,), 0.5), jnp.ones((H,)), jnp.full((H,), 0.5)])

    def one_tanh_t(z, c):  # _gates in the [H, N] layout
        t = jnp.tanh(z * scale.reshape(-1, *[1] * (z.ndim - 1)))
        i, f, gg, o = t[:H], t[H : 2 * H], t[2 * H : 3 * H], t[3 * H :]
        c = (0.5 + 0.5 * f) * c + (0.5 + 0.5 * i) * gg
        return (0.5 + 0.5 * o) * jnp.tanh(c), c

    # the dense layer's real tick: the input part is a row term (per a) plus a column term
    # (per b), broadcast over the grid; which grid axis is minor matters (B = 10 is short)
    A = args.grid_a
    B = N // A
    rows = jax.random.normal(k[3], (4 * H, A))
    cols = jax.random.normal(k[2], (4 * H, B))

    def grid_tick(h, c, b_minor):
        z = (w.T @ h.reshape(H, -1)).reshape(4 * H, *h.shape[1:])
        if b_minor:
            return one_tanh_t(z + rows[:, :, None] + cols[:, None, :], c)
        return one_tanh_t(z + rows[:, None] + cols[..., None], c)

    hg, cg = h.T.reshape(H, B, A), c.T.reshape(H, B, A)
    variants = {
        "[N,H] four gates (main)": (lambda s: four_gates(s[0] @ w + g, s[1]), (h, c)),
        "[N,H] one tanh (perf)": (lambda s: one_tanh(s[0] @ w + g, s[1]), (h, c)),
        "[N,H] matmul + add only": (lambda s: ((s[0] @ w + g)[:, :H], s[1]), (h, c)),
        "[N,H] gates only, no matmul": (lambda s: one_tanh(g + s[0][:, :1], s[1]), (h, c)),
        "[H,N] four gates": (lambda s: four_gates_t(w.T @ s[0] + g.T, s[1]), (h.T, c.T)),
        "[H,N] one tanh": (lambda s: one_tanh_t(w.T @ s[0] + g.T, s[1]), (h.T, c.T)),
        "[H,N] matmul + add only": (lambda s: ((w.T @ s[0] + g.T)[:H], s[1]), (h.T, c.T)),
        "grid [H,A,B] (B minor), row + column input": (
            lambda s: grid_tick(s[0], s[1], True),
            (hg.swapaxes(1, 2), cg.swapaxes(1, 2)),
        ),
        "grid [H,B,A] (A minor, the layer's), row + column input": (
            lambda s: grid_tick(s[0], s[1], False),
            (hg, cg),
        ),
    }
    compiled = {}
    for name, (body, init) in variants.items():
        one = jax.jit(body).lower(init).compile()
        cost = one.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        ticks = lambda s, body=body: jax.lax.fori_loop(0, args.ticks, lambda i, s: body(s), s)
        loop = jax.jit(ticks)
        jax.block_until_ready(loop(init))
        compiled[name] = (loop, init, cost)
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (loop, init, _) in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(loop(init))
            times[name].append((time.perf_counter() - t0) / args.ticks * 1e6)
    for name, (_, _, cost) in compiled.items():
        row = {
            "variant": name,
            "us_per_tick_median": round(statistics.median(times[name]), 1),
            "us_per_tick_min": round(min(times[name]), 1),
            "flops": cost.get("flops"),
            "bytes_accessed": cost.get("bytes accessed"),
            "transcendentals": cost.get("transcendentals"),
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
