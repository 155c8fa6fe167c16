"""The hand-designed learners alone on meta-test episodes: the bar a meta-learned LA must clear.

    python -m experiments.simple_baselines                  # quickstart format, 32 x 2000 steps
    python -m experiments.simple_baselines --learners ncm,knn,1nn --set eval.num_episodes=8

Builds the baselines exactly as a meta-training run's meta-test does
(:class:`vsml_jax.evaluation.MetaTest`: online SGD/Adam with the learning rate tuned on
meta-*training* episodes, ``ncm``/``knn``/``1nn`` as they are) and evaluates them on the
same test episodes that run would draw (seed, episode format and ``eval`` settings from
the preset, with name=simple_baselines eval.episode_length=2000 eval.num_episodes=32 over
it), then prints the Markdown table. No meta-training happens.

Writes under ``runs/simple_baselines/<run-id>/``: config.yaml, provenance.json,
results.csv (one row per test set and learner: the accuracy summaries and the tuned
``lr``) and results.md (the table printed). ``--resume [RUN_DIR]`` evaluates again into
that run dir (default: the latest) with its saved config, rewriting the outputs.
"""

import sys
import time
from pathlib import Path

from vsml_jax.config import HAND_DESIGNED
from vsml_jax.runtime.cli import Command, run_command

PRESET = Path(__file__).parents[1] / "es_mnist" / "configs" / "quickstart.yaml"
# over the preset, before --set: its own run folder, longer and more test episodes
DEFAULTS = (
    "name=simple_baselines",
    "eval.episode_length=2000",
    "eval.num_episodes=32",
    f"eval.baselines=[{','.join(HAND_DESIGNED)}]",
)


def add_args(p) -> None:
    p.add_argument(
        "--learners",
        help="comma-separated hand-designed learners, eval.baselines "
        f"(default: {','.join(HAND_DESIGNED)})",
    )


def overrides(args) -> list[str]:
    if args.learners is None:
        return []
    return [f"eval.baselines=[{','.join(n for n in args.learners.split(',') if n)}]"]


def markdown(rows: list[dict]) -> str:
    """The table of meta-test ``rows``, as printed."""
    lines = [
        "| test set | learner | acc. steps 1-100 | mean acc. (all steps) | last 100 steps "
        "| steps to 80% | episodes x steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in rows:
        lines.append(
            f"| {m['dataset']} | {m['learner']} | "
            f"{m['first100_acc']:.3f} ± {m['first100_ci95']:.3f} | "
            f"{m['mean_acc']:.3f} ± {m['ci95']:.3f} | {m['last100_acc']:.3f} | "
            f"{m['steps_to_80']} | {m['episodes']} x {m['steps']} |"
        )
    return "\n".join(lines) + "\n"


def baselines(cfg, run_dir: Path, resumed: bool = False) -> str | None:
    """Tune and meta-test ``cfg.eval.baselines``; write results.csv and results.md into
    ``run_dir`` and return the table and where it is (process 0)."""
    import jax

    from vsml_jax.build import load_data
    from vsml_jax.evaluation import EVAL_SUMMARY, MetaTest, meta_test, summary_row, write_table
    from vsml_jax.runtime.devices import population_mesh
    from vsml_jax.runtime.files import write_text

    mesh = population_mesh()
    t0 = time.time()
    train_data = load_data(cfg, cfg.data.train_sets, "train", mesh)
    # the baselines of a real run's meta-test (lr tuning included); the meta-learned
    # learner is not evaluated
    tester = MetaTest.from_config(cfg, train_data, mesh)
    print(f"learning rates tuned on meta-training episodes: {tester.baseline_lrs}", flush=True)
    rows, _ = meta_test(
        tester.baselines, tester.datasets, tester.spec, tester.num_episodes, tester.key
    )
    seconds = time.time() - t0
    if jax.process_index() != 0:
        return None
    table = [
        {
            "dataset": m["dataset"],
            "learner": m["learner"],
            **summary_row(m, EVAL_SUMMARY),
            "lr": tester.baseline_lrs.get(m["learner"].split(" ")[0]),
        }
        for m in rows
    ]
    write_table(table, run_dir)
    write_text(run_dir / "results.md", markdown(rows))  # the table as printed
    return (
        f"\n{markdown(rows)}\n{seconds:.0f} s (data, lr tuning and evaluation)\n"
        f"done: {run_dir} (results.csv, results.md)"
    )


COMMAND = Command(
    description=__doc__,
    preset=PRESET,
    run=baselines,
    set_example="eval.num_episodes=8",
    # where it runs and reads, not what it measures (it meta-tests on one device)
    resume_safe=("name", "out_dir", "data.data_dir", "cpu_devices"),
    add_args=add_args,
    overrides=overrides,
    defaults=DEFAULTS,
    resume_help="evaluate again, with the config saved there, into the latest run (or "
    "RUN_DIR), rewriting its outputs; only name, out_dir, data.data_dir and cpu_devices "
    "may change",
    prog="python -m experiments.simple_baselines",
)


def main(argv=None) -> int:
    return run_command(COMMAND, argv)


if __name__ == "__main__":
    sys.exit(main())
