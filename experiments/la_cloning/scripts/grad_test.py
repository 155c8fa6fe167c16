# meta-test a meta-trained clone (meta-gradients or ES) at 784 inputs on the la_cloning
# run's episodes: python -m experiments.la_cloning.scripts.grad_test RUN_DIR META_RUN_DIR[@STEP]
# [TEST_SET ...] (STEP: a checkpoint of META_RUN_DIR; default its latest)
import dataclasses
import sys
from pathlib import Path

import jax
import numpy as np
import yaml

from experiments.la_cloning import protocol as L
from vsml_jax.build import episode_spec, load_data, run_key
from vsml_jax.evaluation import (
    PAIRED_WINDOWS,
    cached_accuracy,
    paired_difference,
    summarize,
    write_table,
)
from vsml_jax.learners.vsml import vsml
from vsml_jax.loading import load_meta_params
from vsml_jax.runtime.devices import population_mesh

rd = Path(sys.argv[1])
gd, _, step = sys.argv[2].partition("@")
gd, step = Path(gd), int(step) if step else None
cfg = L.load(yaml.safe_load((rd / "config.yaml").read_text()))
meta_cfg, _, params = load_meta_params(gd, step)
label = L.IMPROVED[meta_cfg.trainer]
# a learner with a class-mean memory (scripts/class_means.py) reads the label
net = dataclasses.replace(L.clone_network(cfg), feed_label=meta_cfg.network.feed_label)
if net.feed_label:
    label += " + class means"
base = cfg.base
spec = episode_spec(base, base.eval.episode_length)
only = set(sys.argv[3:])
tag = f"_step{step}" if step else ""
rows = []
for i, t in enumerate(cfg.test_sets):
    curve = gd / f"{t}__784{tag}.npz"
    # a test set not named still gets its rows when its curve is cached (another process
    # meta-tested it), so the results table below holds every test set meta-tested so far
    if only and t not in only and not curve.exists():
        continue
    data = None if curve.exists() else load_data(base, [t], "test", population_mesh())
    key = jax.random.fold_in(run_key(base.seed, "meta_test"), i)
    acc = cached_accuracy(curve, vsml(net), params, data, spec, base.eval.num_episodes, key)
    mt = rd / "meta_test"
    others = {
        k: np.load(mt / f"{t}__{f}.npz")["accuracy"]
        for k, f in [
            ("clone", "shallow__VSML_clone"),
            ("adam", "shallow__adam"),
            ("ncm", "ncm"),
            ("1nn", "1nn"),
        ]
    }
    s, *refs = (
        {"test_set": t, "network": "shallow", "learner": name, **summarize(a)}
        for name, a in {label: acc, **others}.items()
    )
    rows += [s, *refs]
    print(
        t,
        label
        + ": first100 {:.3f} mean {:.3f} last100 {:.3f}".format(
            s["first100_acc"], s["mean_acc"], s["last100_acc"]
        ),
    )
    for k, o in others.items():
        d = paired_difference(acc, o)
        for w in PAIRED_WINDOWS:  # steps 1-100, all steps, the last 100
            print(f"   vs {k:5s} {w:8s} diff {d[f'd_{w}']:+.3f} ± {d[f'd_{w}_ci95']:.3f}")
# results<tag>.csv/.md in META_RUN_DIR: one row per learner and test set meta-tested so far
# (python -m experiments.ship_pretrained ... --results <it> puts them in a model card)
write_table(rows, gd, stem=f"results{tag}")
