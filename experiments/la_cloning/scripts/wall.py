# ES against meta-gradients on wall time: python -m experiments.la_cloning.scripts.wall OUT_PREFIX
# LABEL=RUN_DIR[+RUN_DIR...] ... (a label's runs are one meta-training continued run after run,
# e.g. grad=<first>+<continuation>). Writes OUT_PREFIX_meta_loss.png (meta-loss against the
# cumulative wall time, from each metrics.jsonl row's steps_per_s) and, from the meta-tests
# grad_test cached in the runs ({mnist,fashion_mnist}__784[_stepN].npz),
# OUT_PREFIX_first100.png and OUT_PREFIX_mean.png (accuracy over steps 1-100 / over the
# episode against the wall time at the meta-tested checkpoint).
import re
import sys
from pathlib import Path

import numpy as np

from vsml_jax import plots
from vsml_jax.runtime.metrics import read_metrics

out = sys.argv[1]
loss, first100, mean = {}, {}, {}
for arg in sys.argv[2:]:
    label, _, dirs = arg.partition("=")
    t0, step0, xs, ys = 0.0, 0, [], []
    tested = {}  # test set -> [(wall, first100, mean)]
    for d in map(Path, dirs.split("+")):
        rows = [r for r in read_metrics(d) if "meta_loss" in r]
        wall = t0 + np.cumsum([1.0 / r["steps_per_s"] for r in rows])
        xs += list(wall / 60)
        ys += [r["meta_loss"] for r in rows]
        for f in sorted(d.glob("*__784*.npz")):
            m = re.fullmatch(r"(.+)__784(?:_step(\d+))?\.npz", f.name)
            step = int(m[2]) if m[2] else len(rows)
            acc = np.load(f)["accuracy"]
            point = (wall[step - 1] / 60, acc[:, :100].mean(), acc.mean())
            tested.setdefault(m[1], []).append(point)
        t0, step0 = wall[-1], step0 + len(rows)
    loss[f"{label} ({step0} steps)"] = (xs, ys)
    for t, points in tested.items():
        w, a, b = map(list, zip(*sorted(points)))
        first100[f"{label}, {t}"] = (w, a)
        mean[f"{label}, {t}"] = (w, b)
plots.plot_curves(loss, f"{out}_meta_loss.png", "wall time (min)", "meta-loss (500-step episodes)")
kw = {"xlabel": "wall time (min)", "ylabel": "online accuracy at 784 inputs", "markers": True}
plots.plot_curves(first100, f"{out}_first100.png", title="steps 1-100", **kw)
plots.plot_curves(mean, f"{out}_mean.png", title="mean over 2000 steps", **kw)
