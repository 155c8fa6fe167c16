"""What a TPU's default matmul precision changes: a paired meta-test on CPU.

    python -m benchmarks.precision [--learner vsml_mnist_quickstart] [--episodes 64] [--steps 500]

Runs the shipped meta-parameters on the same meta-test episodes (MNIST and Fashion-MNIST
test splits) with ``network.cell.matmul_dtype`` float32 and bfloat16 (matmul inputs
rounded to bfloat16, products summed in float32: the arithmetic of a TPU's one-pass
``precision: default``), and prints one JSON line per test set: mean online accuracy and
loss at each, their paired differences with 95% intervals, the largest single-step loss
difference and the fraction of predictions that differ (docs/TPU_PLAN.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import jax
import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--learner", default="vsml_mnist_quickstart")
    p.add_argument("--episodes", type=int, default=64)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--sets", default="mnist,fashion_mnist")
    args = p.parse_args(argv)

    from vsml_jax import pretrained
    from vsml_jax.build import build_learner, episode_spec, load_data
    from vsml_jax.evaluation import evaluate
    from vsml_jax.runtime.devices import population_mesh

    shipped = pretrained.load(args.learner)
    cfg = dataclasses.replace(
        shipped.config, data=dataclasses.replace(shipped.config.data, data_dir=None)
    )
    spec = episode_spec(cfg, args.steps)
    for name in args.sets.split(","):
        data = load_data(cfg, [name], "test", population_mesh())
        res = {}
        for dtype in ("float32", "bfloat16"):
            cell = dataclasses.replace(cfg.network.cell, matmul_dtype=dtype)
            learner = build_learner(
                dataclasses.replace(cfg, network=dataclasses.replace(cfg.network, cell=cell))
            )
            key = jax.random.PRNGKey(7)
            res[dtype] = evaluate(learner, shipped.meta_params, data, spec, args.episodes, key)
        a, b = res["float32"], res["bfloat16"]
        d_acc, d_loss = b.accuracy.mean(1) - a.accuracy.mean(1), b.loss.mean(1) - a.loss.mean(1)
        ci = lambda d: float(1.96 * d.std(ddof=1) / np.sqrt(len(d)))  # noqa: E731
        row = {
            "test_set": name,
            "episodes": args.episodes,
            "steps": args.steps,
            "acc_float32": float(a.accuracy.mean()),
            "acc_bfloat16": float(b.accuracy.mean()),
            "acc_diff": float(d_acc.mean()),
            "acc_diff_ci95": ci(d_acc),
            "loss_float32": float(a.loss.mean()),
            "loss_bfloat16": float(b.loss.mean()),
            "loss_diff": float(d_loss.mean()),
            "loss_diff_ci95": ci(d_loss),
            "max_step_loss_diff": float(np.abs(b.loss - a.loss).max()),
            "predictions_differ": float((a.accuracy != b.accuracy).mean()),
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
