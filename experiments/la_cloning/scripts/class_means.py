# a class-mean memory added to a VSML learner:
# python -m experiments.la_cloning.scripts.class_means SRC OUT_DIR --gamma G [--feature-gain K]
# SRC: a run directory (its latest checkpoint) or pretrained:NAME. Writes OUT_DIR, a run
# directory whose one checkpoint holds SRC's V_M with vsml_jax.vsml.class_means's memory in
# its spare units (NCM's score on tanh(K x), times G, added to every forward message), and
# whose config reads the label (network.feed_label: true). OUT_DIR then works wherever a run
# directory does: screen, grad_test, init_from, ship_pretrained.
import argparse
import json
from pathlib import Path

import numpy as np
import yaml
from jax.flatten_util import ravel_pytree

from vsml_jax import pretrained
from vsml_jax.config import to_dict
from vsml_jax.loading import PRETRAINED_PREFIX, restore_run
from vsml_jax.runtime.checkpoint import Checkpointer
from vsml_jax.vsml.class_means import add_class_means

p = argparse.ArgumentParser()
p.add_argument("source")
p.add_argument("out", type=Path)
p.add_argument("--gamma", type=float, required=True)
p.add_argument("--feature-gain", type=float, default=1.0)
args = p.parse_args()
if args.out.exists():
    raise SystemExit(f"{args.out} exists; name a new directory")
if args.source.startswith(PRETRAINED_PREFIX):
    src = pretrained.load(args.source[len(PRETRAINED_PREFIX) :])
    cfg, params, step = src.config, src.meta_params, 0
    tree = {k: np.asarray(v) for k, v in src.arrays.items()}
    task = src.card["task"]
else:
    source = Path(args.source)
    cfg, _, params, tree = restore_run(source)
    ckpt = Checkpointer(source / "checkpoints")
    tree, step = dict(tree), ckpt.latest_step()
    ckpt.close()
    task = json.loads((source / "task.json").read_text())
if cfg.learner != "vsml":
    raise SystemExit(f"{args.source} is a {cfg.learner!r} learner; the memory is for vsml")
cell = cfg.network.cell
params = tuple(add_class_means(q, cell, args.gamma, args.feature_gain) for q in params)
flat, _ = ravel_pytree(params)
tree["mean"] = np.asarray(flat)
config = to_dict(cfg)
config["network"]["feed_label"] = True
args.out.mkdir(parents=True)
(args.out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
(args.out / "task.json").write_text(json.dumps(task) + "\n")
record = {"source": args.source, "gamma": args.gamma, "feature_gain": args.feature_gain}
(args.out / "class_means.json").write_text(json.dumps(record) + "\n")
ckpt = Checkpointer(args.out / "checkpoints")
ckpt.save(step, tree)
ckpt.close()
print(f"{args.out}: {args.source} with a class-mean memory (gamma {args.gamma})")
