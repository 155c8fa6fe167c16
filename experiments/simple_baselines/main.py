"""The hand-designed learners alone on meta-test episodes: the bar a meta-learned LA must clear.

    python -m experiments.simple_baselines                  # quickstart format, 32 x 2000 steps
    python -m experiments.simple_baselines --learners ncm,knn,1nn --set eval.num_episodes=8

Builds the baselines exactly as a meta-training run's meta-test does
(:class:`vsml_jax.evaluation.MetaTest`: online SGD/Adam with the learning rate tuned on
meta-*training* episodes, ``ncm``/``knn``/``1nn`` as they are) and evaluates them on the
same test episodes that run would draw (seed, episode format and ``eval`` settings from
the preset), then prints a Markdown table. No meta-training happens.
"""

import argparse
import sys
import time
from pathlib import Path

from vsml_jax.build import load_run_config
from vsml_jax.config import HAND_DESIGNED
from vsml_jax.runtime.cli import add_config_args, guarded, setup_logging

PRESET = Path(__file__).parents[1] / "es_mnist" / "configs" / "quickstart.yaml"
DEFAULTS = ["eval.episode_length=2000", "eval.num_episodes=32"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m experiments.simple_baselines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_args(p, str(PRESET), f"override a config value (applied after {' '.join(DEFAULTS)})")
    p.add_argument(
        "--learners",
        default=",".join(HAND_DESIGNED),
        help="comma-separated hand-designed learners (default: %(default)s)",
    )
    args = p.parse_args(argv)
    setup_logging()
    learners = tuple(n for n in args.learners.split(",") if n)
    overrides = [*DEFAULTS, *args.overrides, f"eval.baselines=[{','.join(learners)}]"]
    return guarded(lambda: _run(load_run_config(args.config, overrides)))


def _run(cfg) -> None:
    from vsml_jax.build import load_data
    from vsml_jax.evaluation import MetaTest, meta_test
    from vsml_jax.runtime.devices import population_mesh

    mesh = population_mesh()
    t0 = time.time()
    train_data = load_data(cfg, cfg.data.train_sets, "train", mesh)
    # the baselines of a real run's meta-test (lr tuning included); the meta-learned
    # learner is not evaluated
    tester = MetaTest.from_config(cfg, train_data, mesh)
    print(f"learning rates tuned on meta-training episodes: {tester.baseline_lrs}")
    rows, _ = meta_test(
        tester.baselines, tester.datasets, tester.spec, tester.num_episodes, tester.key
    )
    print()
    print(
        "| test set | learner | acc. steps 1-100 | mean acc. (all steps) | last 100 steps "
        "| steps to 80% | episodes x steps |"
    )
    print("|---|---|---|---|---|---|---|")
    for m in rows:
        print(
            f"| {m['dataset']} | {m['learner']} | "
            f"{m['first100_acc']:.3f} ± {m['first100_ci95']:.3f} | "
            f"{m['mean_acc']:.3f} ± {m['ci95']:.3f} | {m['last100_acc']:.3f} | "
            f"{m['steps_to_80']} | {m['episodes']} x {m['steps']} |"
        )
    print(f"\n{time.time() - t0:.0f} s (data, lr tuning and evaluation)")


if __name__ == "__main__":
    sys.exit(main())
