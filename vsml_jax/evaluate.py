"""Meta-test any learners on any datasets, all on the same online episodes.

python -m vsml_jax.evaluate --learners pretrained:clone_backprop_es adam ncm \
    --datasets kmnist fashion_mnist [--steps 2000] [--episodes 16] [task transforms]

Learners are shipped names (``pretrained:NAME``), training run directories, checkpoint
folders (``<run>/checkpoints/<step>``), or hand-designed learners (sgd, adam, ncm, knn,
1nn; online SGD/Adam get the learning rate of ``--lrs`` that is best on episodes of the
``--tune-on`` training split, never on a test split). Task transforms: ``--classes``
(a class subset, relabelled 0..k-1), ``--image-size H W`` (resize), ``--input-dim A``
(a fresh random projection to A inputs per episode), ``--permute-pixels``, ``--steps``.
Each meta-learned learner reads the episodes through the preprocessing it was trained
with (e.g. its own projection to its input size); every learner sees the same examples
and labels in the same order. Writes results.csv, results.md and curves.png (and
curves_logx.png) under ``runs/evaluate/<run-id>/``.

This is the project's one meta-test routine (:func:`vsml_jax.evaluation.meta_test`):
training's periodic meta-tests and the cross-dataset benchmark call it too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from vsml_jax import interrupts

if __name__ == "__main__":  # Ctrl-C during the imports below: one line, exit 130
    interrupts.install()

from vsml_jax.config import HAND_DESIGNED, DataConfig, EvalConfig, RunConfig  # noqa: E402

COLUMNS = (
    "dataset",
    "learner",
    "first100_acc",
    "first100_ci95",
    "mean_acc",
    "ci95",
    "last100_acc",
    "steps_to_80",
    "episodes",
    "steps",
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--learners", nargs="+", required=True, metavar="LEARNER")
    p.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"], metavar="NAME")
    p.add_argument("--split", default="test")
    p.add_argument("--steps", type=int, default=2000, help="episode length (default %(default)s)")
    p.add_argument("--episodes", type=int, default=16, help="episodes per dataset")
    p.add_argument("--classes", type=int, nargs="+", help="keep these classes (relabelled)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="resize images")
    p.add_argument("--grey", action="store_true", help="convert to grey scale")
    p.add_argument("--input-dim", type=int, help="random projection to this many inputs")
    p.add_argument("--permute-pixels", action="store_true", help="a random pixel permutation")
    p.add_argument("--tune-on", default="mnist", help="training split for sgd/adam lr tuning")
    p.add_argument("--lrs", type=float, nargs="+", default=list(EvalConfig.baseline_lrs))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default="runs")
    p.add_argument("--data-dir", default=None, help="TFDS data dir")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def data_config(args, num_classes: int) -> RunConfig:
    """The run config that describes the evaluation episodes (data and transforms)."""
    data = DataConfig(
        train_sets=(args.tune_on,),
        data_dir=args.data_dir,
        image_size=tuple(args.image_size) if args.image_size else None,
        grey=args.grey,
        classes=tuple(args.classes) if args.classes else None,
        input_dim=args.input_dim,
        num_classes=num_classes,
        projection_prob=1.0 if args.input_dim else 0.0,
        permute_pixels=args.permute_pixels,
        episode_length=args.steps,
    )
    ev = EvalConfig(
        datasets=tuple(args.datasets),
        split=args.split,
        episode_length=args.steps,
        num_episodes=args.episodes,
        baselines=(),
        baseline_lrs=tuple(args.lrs),
    )
    return RunConfig(name="evaluate", seed=args.seed, out_dir=args.out_dir, data=data, eval=ev)


def learner_spec(trained, spec, dataset_dim: int):
    """The episode spec ``trained`` reads: ``spec`` through the preprocessing it was
    meta-trained with (:meth:`~vsml_jax.loading.TrainedLearner.input_plan`)."""
    task = trained.task
    if trained.config.learner != "vsml" and spec.num_classes > task.num_classes:
        raise ValueError(
            f"learner {trained.name!r} has {task.num_classes} outputs; these tasks have "
            f"{spec.num_classes} classes"
        )
    c = max(spec.num_classes, task.num_classes)
    if spec.projection_prob > 0 and trained.config.data.projection_prob == 0:
        dataset_dim = spec.input_dim  # the tasks' own projection comes first
    how, a = trained.input_plan(dataset_dim)
    if how == "project":
        return dataclasses.replace(spec, input_dim=a, num_classes=c, projection_prob=1.0)
    return dataclasses.replace(spec, input_dim=a, num_classes=c)


def run(args) -> Path:
    import jax

    from vsml_jax import plots, rundir
    from vsml_jax.build import episode_spec, load_arrays, place_data, run_key
    from vsml_jax.evaluation import Entry, meta_test, tuned_baselines, write_table
    from vsml_jax.loading import load_learner
    from vsml_jax.meta.sharding import population_mesh

    mesh = population_mesh()
    hand = [n for n in args.learners if n in HAND_DESIGNED]
    trained = {n: load_learner(n) for n in args.learners if n not in HAND_DESIGNED}
    # the class count (the learners' outputs) is known once the arrays are loaded
    probe = data_config(args, 2)
    arrays = {n: load_arrays(probe, [n], args.split) for n in args.datasets}
    classes = max(a.num_classes for group in arrays.values() for a in group)
    cfg = data_config(args, classes)
    datasets = {n: place_data(cfg, a, mesh) for n, a in arrays.items()}
    spec = episode_spec(cfg, args.steps)
    baselines = {}
    if hand:
        tune = place_data(cfg, load_arrays(cfg, [args.tune_on], "train"), mesh)
        tuned, _ = tuned_baselines(hand, tune, spec, cfg.eval, run_key(args.seed, "baseline_lr"))
        baselines = {label.split(" ")[0]: (label, e) for label, e in tuned.items()}
    entries: dict[str, Entry] = {}
    for name in args.learners:  # in the order given
        if name in baselines:
            label, entry = baselines[name]
            entries[label] = entry
        else:  # its spec depends on each dataset's input size (VSML reads any size)
            t = trained[name]
            entries[name] = Entry(
                t.learner, t.meta_params, lambda data, t=t: learner_spec(t, spec, data.input_dim)
            )
    for data in datasets.values():  # every learner fits every dataset, or one line says why
        for e in entries.values():
            if callable(e.spec):
                e.spec(data)
    rows, curves = meta_test(
        entries, datasets, spec, args.episodes, run_key(args.seed, "meta_test")
    )

    out = rundir.new_run_dir(Path(args.out_dir) / "evaluate", args.seed)
    if jax.process_index() == 0:
        (out / "args.json").write_text(json.dumps(vars(args), indent=2) + "\n")
        rundir.write_provenance(out)
        write_table(rows, COLUMNS, out)
        title = f"{args.episodes} episodes of {args.steps} steps per dataset"
        plots.plot_accuracy_curves(curves, out / "curves.png", title=title)
        plots.plot_accuracy_curves(curves, out / "curves_logx.png", title=title, log_x=True)
        print((out / "results.md").read_text())
        print(f"done: {out} (results.csv, results.md, curves.png)")
    return out


def main(argv=None) -> int:
    from vsml_jax.cli import report, report_interrupt, user_errors

    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        run(args)
    except user_errors() as e:
        if args.verbose:
            raise
        return report(e)
    except KeyboardInterrupt as e:
        if args.verbose:
            raise
        return interrupts.leave(report_interrupt(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
