# screen meta-training checkpoints on TRAIN-split episodes (not grad_test's test episodes):
# python -m experiments.la_cloning.scripts.screen RUN_DIR [--scale S] SRC...
# RUN_DIR: the la_cloning run (its config: data, network); SRC = META_RUN_DIR@STEP, or
# META_RUN_DIR@STEP,STEP,... for the mean meta-parameters of those checkpoints (what
# average.py writes). On 32 MNIST-train and 32 Fashion-MNIST-train episodes at 784 inputs,
# their first 200 steps: accuracy over steps 1-100 and 101-200, paired against NCM on the
# same episodes. --scale S multiplies the standardised inputs of both by S (input_gain S, S).
import argparse
import dataclasses
from pathlib import Path

import jax
import yaml

from experiments.la_cloning import protocol as L
from vsml_jax.build import episode_spec, load_data, run_key
from vsml_jax.evaluation import evaluate, paired_difference
from vsml_jax.learners.ncm import ncm
from vsml_jax.learners.vsml import vsml
from vsml_jax.loading import load_meta_params
from vsml_jax.runtime.devices import population_mesh

STEPS, EPISODES = 200, 32

p = argparse.ArgumentParser()
p.add_argument("run_dir", type=Path)
p.add_argument("sources", nargs="+")
p.add_argument("--scale", type=float, default=1.0)
args = p.parse_args()
cfg = L.load(yaml.safe_load((args.run_dir / "config.yaml").read_text()))
spec = episode_spec(cfg.base, STEPS)
if args.scale != 1.0:  # the same examples, every input times the fixed gain S
    spec = dataclasses.replace(spec, input_gain=(args.scale, args.scale))

datasets = {}
for i, t in enumerate(("mnist", "fashion_mnist")):
    data = load_data(cfg.base, [t], "train", population_mesh())
    key = jax.random.fold_in(run_key(cfg.base.seed, "screen"), i)
    datasets[t] = (data, key, evaluate(ncm(), {}, data, spec, EPISODES, key).accuracy)
learner = vsml(L.clone_network(cfg))
for src in args.sources:
    run, _, steps = src.partition("@")
    trees = [load_meta_params(Path(run), int(s))[2] for s in steps.split(",")]
    params = jax.tree.map(lambda *a: sum(a) / len(a), *trees)
    cols = []
    for t, (data, key, nc) in datasets.items():
        acc = evaluate(learner, params, data, spec, EPISODES, key).accuracy
        d = paired_difference(acc[:, :100], nc[:, :100])  # its 'mean' window: steps 1-100
        cols.append(
            f"{t} 1-100 {acc[:, :100].mean():.3f} (NCM {d['d_mean']:+.3f} ± "
            f"{d['d_mean_ci95']:.3f}) 101-200 {acc[:, 100:].mean():.3f} "
            f"(NCM {nc[:, 100:].mean():.3f})"
        )
    print(src, "|", " | ".join(cols), flush=True)
