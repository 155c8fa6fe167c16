# screen meta-training checkpoints on TRAIN-split episodes (not grad_test's test episodes):
# python -m experiments.la_cloning.scripts.screen RUN_DIR [--scale S] SRC...
# RUN_DIR: the la_cloning run (its config: data, network); SRC = pretrained:NAME (a shipped
# learner), META_RUN_DIR@STEP, or
# META_RUN_DIR@STEP,STEP,... for the mean meta-parameters of those checkpoints (what
# average.py writes). On 32 MNIST-train and 32 Fashion-MNIST-train episodes at 784 inputs,
# their first 200 steps: accuracy over steps 1-100 and 101-200, paired against NCM on the
# same episodes, and the online cross-entropy over steps 1-100 / 101-200. --scale S
# multiplies the standardised inputs of both by S (input_gain S, S).
# --ncm-variants also screens NCM on tanh(x) and NCM without its class-mean norm term
# (vsml_jax.learners.ncm's options); --image-size N resizes the images to N x N first (the
# meta-training format). --norm-penalty LAM[,LAM...] screens each VSML source also with
# LAM * mean_a w_ab^2 subtracted from output b's logit, w the stored weight as the
# constructed clone reads it out (backprop_cell's read-out of the output layer's cell
# state): an added class-norm term like NCM's, by hand.
import argparse
import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import yaml

from experiments.la_cloning import protocol as L
from vsml_jax import pretrained
from vsml_jax.build import episode_spec, load_data, run_key
from vsml_jax.evaluation import evaluate, paired_difference
from vsml_jax.learners.ncm import ncm
from vsml_jax.learners.vsml import vsml
from vsml_jax.loading import PRETRAINED_PREFIX, load_meta_params
from vsml_jax.runtime.devices import population_mesh
from vsml_jax.vsml.backprop import backprop_cell

STEPS, EPISODES = 200, 32

p = argparse.ArgumentParser()
p.add_argument("run_dir", type=Path)
p.add_argument("sources", nargs="*")
p.add_argument("--scale", type=float, default=1.0)
p.add_argument("--ncm-variants", action="store_true")
p.add_argument("--image-size", type=int)
p.add_argument("--norm-penalty", type=lambda s: [float(v) for v in s.split(",")], default=[])
args = p.parse_intermixed_args()
cfg = L.load(yaml.safe_load((args.run_dir / "config.yaml").read_text()))
if args.image_size:
    size = (args.image_size, args.image_size)
    cfg = dataclasses.replace(
        cfg,
        base=dataclasses.replace(
            cfg.base, data=dataclasses.replace(cfg.base.data, image_size=size)
        ),
    )
spec = episode_spec(cfg.base, STEPS)
if args.scale != 1.0:  # the same examples, every input times the fixed gain S
    spec = dataclasses.replace(spec, input_gain=(args.scale, args.scale))

datasets = {}
for i, t in enumerate(("mnist", "fashion_mnist")):
    data = load_data(cfg.base, [t], "train", population_mesh())
    key = jax.random.fold_in(run_key(cfg.base.seed, "screen"), i)
    datasets[t] = (data, key, evaluate(ncm(), {}, data, spec, EPISODES, key).accuracy)


def screen(name, learner, params):
    cols = []
    for t, (data, key, nc) in datasets.items():
        curves = evaluate(learner, params, data, spec, EPISODES, key)
        acc, ce = curves.accuracy, curves.loss
        d = paired_difference(acc[:, :100], nc[:, :100])  # its 'mean' window: steps 1-100
        cols.append(
            f"{t} 1-100 {acc[:, :100].mean():.3f} (NCM {d['d_mean']:+.3f} ± "
            f"{d['d_mean_ci95']:.3f}) 101-200 {acc[:, 100:].mean():.3f} "
            f"(NCM {nc[:, 100:].mean():.3f}) online loss {ce[:, :100].mean():.2f} / "
            f"{ce[:, 100:].mean():.2f}"
        )
    print(name, "|", " | ".join(cols), flush=True)


def norm_penalty(learner, lam):
    """``learner`` (a VSML) with ``lam * mean_a w_ab^2`` subtracted from logit ``b``."""
    readout = backprop_cell(cfg.cell)[1][0]  # [H]: w = readout . c

    def step(meta_params, state, x, feedback):
        state, logits = learner.step(meta_params, state, x, feedback)
        w = jnp.einsum("h,hba->ba", readout, state.cells[-1].c)
        return state, logits - lam * jnp.mean(w * w, axis=-1)

    return learner._replace(step=step)


if args.ncm_variants:
    for features, norm_term in (("tanh", True), ("identity", False), ("tanh", False)):
        learner = ncm(features=features, norm_term=norm_term)
        screen(learner.name, learner, {})
for src in args.sources:
    if src.startswith(PRETRAINED_PREFIX):
        shipped = pretrained.load(src[len(PRETRAINED_PREFIX) :])
        src_cfg, params = shipped.config, shipped.meta_params
    else:
        run, _, steps = src.partition("@")
        loaded = [load_meta_params(Path(run), int(s)) for s in steps.split(",")]
        src_cfg = loaded[0][0]
        params = jax.tree.map(lambda *a: sum(a) / len(a), *(p for *_, p in loaded))
    # the source's feed_label: a class-mean memory (scripts/class_means.py) reads the label
    net = dataclasses.replace(L.clone_network(cfg), feed_label=src_cfg.network.feed_label)
    learner = vsml(net)
    screen(src, learner, params)
    for lam in args.norm_penalty:
        screen(f"{src} norm penalty {lam}", norm_penalty(learner, lam), params)
