"""Short meta-training probes of one LA on the cross-dataset tasks: does it leave ln C?

python -m experiments.rival_plateau meta_rnn 1500 --set grad.batch_size=128

Meta-trains ``LA`` for ``STEPS`` steps (or generations) on the meta-training tasks of
the cross-dataset default (experiments/configs/cross_dataset.yaml: MNIST-train,
100-step episodes, a fresh 32-dim random projection per task, 10 classes) with that
preset's settings for the LA, then ``--set`` overrides of the LA's run config on top
(e.g. ``learner_args={hidden: 128}``, ``grad.lr=0.003``,
``grad.curriculum=[{until: 300, projection_prob: 0.0}]``). No checkpoints, no
meta-test: it prints the meta-loss (mean of the last 50 steps) every 100 steps and at
the end, for the ablations of docs/RESULTS.md section 2.
"""

import argparse
import sys
import time
from pathlib import Path

PRESET = Path(__file__).parent / "configs" / "cross_dataset.yaml"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("la", help="an LA of the preset, e.g. meta_rnn")
    p.add_argument("steps", type=int, help="meta-training steps (a multiple of 10)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)

    import jax
    import numpy as np

    from vsml_jax.build import build_learner, episode_spec, load_data, run_key, task_spec
    from vsml_jax.config import ConfigError, from_dict, load_config, parse_override, set_path
    from vsml_jax.config import to_dict as plain
    from vsml_jax.cross_dataset import CrossDatasetConfig, la_config
    from vsml_jax.meta.sharding import population_mesh
    from vsml_jax.meta.trainer import make_trainer

    try:
        cross = load_config(PRESET, cls=CrossDatasetConfig)
        tree = plain(la_config(cross, args.la, tuple(cross.train_sets[0].split("+"))))
        for text in args.overrides:
            set_path(tree, *parse_override(text))
        cfg = from_dict(type(cross.base), tree)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mesh = population_mesh(jax.devices()[:1])
    data = load_data(cfg, cfg.data.train_sets, "train", mesh)
    learner = build_learner(cfg)
    spec = episode_spec(cfg, cfg.data.episode_length)
    meta_params = learner.meta_init(run_key(cfg.seed, "meta_init"), task_spec(cfg, data))
    trainer = make_trainer(cfg, learner, meta_params, data, spec, mesh)
    block = jax.jit(trainer.block)
    state = trainer.init(meta_params, run_key(cfg.seed, "es"))
    k = trainer.steps_per_block
    t0, losses = time.time(), []
    for g in range(0, args.steps, k):
        state, metrics = block(state, run_key(cfg.seed, "run"), g, *trainer.args)
        losses += np.asarray(metrics["meta_loss"]).tolist()
        if (g + k) % 100 == 0 or g + k >= args.steps:
            print(f"{g + k} meta-loss {np.mean(losses[-50:]):.3f} ({time.time() - t0:.0f} s)")
    print(f"final {args.la} {' '.join(args.overrides)}: {np.mean(losses[-50:]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
