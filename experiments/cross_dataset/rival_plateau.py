"""Short meta-training probes of one LA on the cross-dataset tasks: does it leave ln C?

python -m experiments.cross_dataset.rival_plateau meta_rnn 1500 --set grad.batch_size=128

Meta-trains ``LA`` for ``STEPS`` steps (or generations) on the meta-training tasks of
the cross-dataset default (experiments/cross_dataset/configs/cross_dataset.yaml:
MNIST-train, 100-step episodes, a fresh 32-dim random projection per task, 10 classes) with that
preset's settings for the LA, then ``--set`` overrides of the LA's run config on top
(e.g. ``learner_args={hidden: 128}``, ``grad.lr=0.003``,
``grad.curriculum=[{until: 300, projection_prob: 0.0}]``). It runs
:func:`vsml_jax.train.train` in a temporary folder, without meta-tests, and prints the
meta-loss (mean of 50 steps) every 100 steps and at the end, for the ablations of
docs/RESULTS.md section 2.
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

    import tempfile

    import numpy as np

    from experiments.cross_dataset.protocol import CrossDatasetConfig, la_config
    from vsml_jax.config import ConfigError, from_dict, load_config, parse_override, set_path
    from vsml_jax.config import to_dict as plain
    from vsml_jax.runtime.metrics import read_metrics
    from vsml_jax.train import train

    try:
        cross = load_config(PRESET, cls=CrossDatasetConfig)
        tree = plain(la_config(cross, args.la, tuple(cross.train_sets[0].split("+"))))
        for text in args.overrides:
            set_path(tree, *parse_override(text))
        # the one training loop, without meta-tests and with one checkpoint at the end
        schedule = "grad.steps" if tree["trainer"] == "grad" else "es.generations"
        for text in (f"{schedule}={args.steps}", "eval.datasets=[]", "tensorboard=false"):
            set_path(tree, *parse_override(text))
        tree["checkpoint_every"] = args.steps
        cfg = from_dict(type(cross.base), tree)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    with tempfile.TemporaryDirectory() as out:
        run_dir = train(cfg, run_dir=Path(out) / "probe")
        losses = [r["meta_loss"] for r in read_metrics(run_dir) if "meta_loss" in r]
    for n in range(100, len(losses) + 1, 100):
        print(f"{n} meta-loss {np.mean(losses[n - 50 : n]):.3f}")
    print(
        f"final {args.la} {' '.join(args.overrides)}: {np.mean(losses[-50:]):.3f} "
        f"({time.time() - t0:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
