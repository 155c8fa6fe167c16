"""Meta-test any learners on any datasets, all on the same online episodes.

python -m vsml_jax.evaluate --learners pretrained:clone_backprop_es adam ncm 1nn \
    --datasets kmnist fashion_mnist [--steps 2000] [--episodes 16] [--reference adam ncm]
    [task transforms]

Learners are shipped names (``pretrained:NAME``; ``pretrained:all`` is every shipped
learner), training run directories, checkpoint
folders (``<run>/checkpoints/<step>``), or hand-designed learners (sgd, adam, ncm, knn,
1nn; online SGD/Adam get the learning rate with the lowest online loss on episodes of
the ``--tune-on`` training split, never of a test split: the ``--lrs`` grid is extended
past its edge, up to ``--lr-extensions`` rates, until the best rate is interior).
Task transforms: ``--classes`` (a class subset, relabelled 0..k-1: every learner then
predicts among those k classes), ``--image-size H W`` (resize), ``--input-dim A`` (a
fresh random projection to A inputs per episode), ``--permute-pixels``, ``--steps``.
Each meta-learned learner reads the episodes through the preprocessing it was trained
with (e.g. its own projection to its input size); every learner sees the same examples
and labels in the same order.

Every flag sets the config key of its name (``--set KEY=VALUE`` sets any: ``--set
episodes=32``); the run dir holds that config (config.yaml) and provenance.json, as every
command's does. ``--resume [RUN_DIR]`` evaluates again into that run dir (default: the
latest) with its saved config, rewriting the outputs: an evaluation keeps no partial work.

Writes under ``runs/evaluate/<run-id>/``: results.csv (one row per dataset and learner:
summaries, the tuned ``lr`` and whether it was ``lr_interior``, and with ``--reference
R`` the paired difference to R: ``d_<window>_vs_R``, its ``_ci95``, ``wins_``/``losses_``
over episodes, for steps 1-100, the whole episode and the last 100 steps), results.md
(the same as tables), curves.npz (per-episode accuracy: ``<dataset>`` is ``[learners,
episodes, steps]``, ``learners`` their labels in that order), lr_search.json (each
tuned rate: the rates tried and their mean online losses), curves.png, curves_logx.png.

This is the project's one meta-test routine (:func:`vsml_jax.evaluation.meta_test`;
paired differences: :func:`vsml_jax.evaluation.paired_difference`): training's periodic
meta-tests and the cross-dataset benchmark call it too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import NamedTuple

from vsml_jax.config import HAND_DESIGNED, ConfigError, DataConfig, EvalConfig, RunConfig


def result_row(row: dict, search, paired: dict, references) -> tuple[dict, dict]:
    """A row of ``results.csv`` for a :func:`~vsml_jax.evaluation.meta_test` row: its
    dataset, learner and summaries (the ``results.md`` part), then the tuned lr
    (``search``, or None) and the paired differences to each of ``references``
    (``paired[k_vs_ref]``; empty against itself). Returns ``(md part, the rest)``."""
    from vsml_jax.evaluation import EVAL_SUMMARY, PAIRED_KEYS, summary_row

    head = {"dataset": row["dataset"], "learner": row["learner"], **summary_row(row, EVAL_SUMMARY)}
    tail = {
        "lr": None if search is None else search.lr,
        "lr_interior": None if search is None else search.interior,
        **{f"{k}_vs_{r}": paired.get(f"{k}_vs_{r}") for r in references for k in PAIRED_KEYS},
    }
    return head, tail


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """What one ``python -m vsml_jax.evaluate`` run meta-tests (its ``config.yaml``): each
    flag sets the key of its name (``--tune-on`` sets ``tune_on``), ``--set KEY=VALUE`` any
    of them; a flag wins over ``--set``. The value checks name the flag."""

    name: str = "evaluate"
    out_dir: str = "runs"
    seed: int = 0
    learners: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ("mnist", "fashion_mnist")
    split: str = "test"
    steps: int = 2000
    episodes: int = 16
    classes: tuple[int, ...] | None = None
    image_size: tuple[int, int] | None = None
    grey: bool = False
    input_dim: int | None = None
    permute_pixels: bool = False
    tune_on: str = "mnist"
    lrs: tuple[float, ...] = EvalConfig.baseline_lrs
    lr_extensions: int = 6
    reference: tuple[str, ...] = ()
    data_dir: str | None = None
    # the meta-test runs on one device (the data is placed on each): more only split the CPU
    cpu_devices: int = 1

    def __post_init__(self):
        check_args(self)


def add_args(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`EvaluateConfig`'s keys (``--data-dir``, ``--config``, ``--set``,
    ``--resume`` and ``-v`` are every command's); a flag not given leaves its key as is."""
    d = EvaluateConfig
    p.add_argument("--learners", nargs="+", metavar="LEARNER", help="the learners (required)")
    p.add_argument(
        "--datasets", nargs="+", metavar="NAME", help=f"(default: {' '.join(d.datasets)})"
    )
    p.add_argument("--split", help=f"(default: {d.split})")
    p.add_argument("--steps", type=int, help=f"episode length (default {d.steps})")
    p.add_argument("--episodes", type=int, help=f"episodes per dataset (default {d.episodes})")
    p.add_argument("--classes", type=int, nargs="+", help="keep these classes (relabelled)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="resize images")
    p.add_argument("--grey", action="store_const", const=True, help="convert to grey scale")
    p.add_argument("--input-dim", type=int, help="random projection to this many inputs")
    p.add_argument(
        "--permute-pixels", action="store_const", const=True, help="a random pixel permutation"
    )
    p.add_argument(
        "--tune-on", help=f"training split for sgd/adam lr tuning (default: {d.tune_on})"
    )
    p.add_argument(
        "--lrs", type=float, nargs="+", help=f"(default: {' '.join(f'{x:g}' for x in d.lrs)})"
    )
    p.add_argument(
        "--lr-extensions",
        type=int,
        metavar="N",
        help=f"rates tried beyond the --lrs grid's edges, at most (default {d.lr_extensions})",
    )
    p.add_argument(
        "--reference",
        nargs="+",
        metavar="LEARNER",
        help="learners of --learners to compare every other one with, on the same episodes",
    )
    p.add_argument("--seed", type=int, help=f"(default: {d.seed})")
    p.add_argument("--out-dir", help=f"writes under OUT_DIR/evaluate/ (default: {d.out_dir})")


# the keys add_args sets (each flag's dest is its key)
FLAG_KEYS = (
    "learners",
    "datasets",
    "split",
    "steps",
    "episodes",
    "classes",
    "image_size",
    "grey",
    "input_dim",
    "permute_pixels",
    "tune_on",
    "lrs",
    "lr_extensions",
    "reference",
    "seed",
    "out_dir",
)


def overrides(args) -> list[str]:
    """The flags given, as ``key=value`` overrides of :class:`EvaluateConfig` (JSON values,
    which YAML reads as they are), with ``pretrained:all`` expanded
    (:func:`expand_learners`), so that ``config.yaml`` names every learner."""
    out = []
    for key in FLAG_KEYS:
        value = getattr(args, key)
        if value is None:
            continue
        if key == "learners":
            value = expand_learners(value)
        out.append(f"{key}={json.dumps(value)}")
    return out


ALL_SHIPPED = "pretrained:all"


def expand_learners(names: list[str]) -> list[str]:
    """``names`` with ``pretrained:all`` replaced by every shipped learner."""
    if ALL_SHIPPED not in names:
        return list(names)
    from vsml_jax import pretrained

    i = names.index(ALL_SHIPPED)
    shipped = [f"pretrained:{n}" for n in pretrained.available()]
    return [*names[:i], *shipped, *(n for n in names[i + 1 :] if n != ALL_SHIPPED)]


def check_args(args) -> None:
    """Raise ConfigError (one line, naming the flag as typed) for bad flag values."""
    for flag, value in (
        ("--steps", args.steps),
        ("--episodes", args.episodes),
        ("--input-dim", args.input_dim),
    ):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    if args.lr_extensions < 0:
        raise ConfigError(f"--lr-extensions must be >= 0, got {args.lr_extensions}")
    if args.image_size and min(args.image_size) < 1:
        raise ConfigError(
            f"--image-size needs two sizes >= 1, got {' '.join(map(str, args.image_size))}"
        )
    bad = [x for x in args.lrs if not (math.isfinite(x) and x > 0)]
    if bad:
        raise ConfigError(f"--lrs must be finite and > 0, got {' '.join(map(str, bad))}")
    if args.classes is not None:
        if len(set(args.classes)) < 2 or len(set(args.classes)) != len(args.classes):
            raise ConfigError(
                f"--classes needs at least two different classes, no repeats; got "
                f"{' '.join(map(str, args.classes))}"
            )
        if min(args.classes) < 0:
            raise ConfigError(f"--classes are labels >= 0, got {' '.join(map(str, args.classes))}")
    for flag, names in (("--learners", args.learners), ("--datasets", args.datasets)):
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"{flag} names {', '.join(twice)} more than once")
    stray = [r for r in args.reference if r not in expand_learners(args.learners)]
    if stray:
        raise ConfigError(
            f"--reference {' '.join(stray)}: not among --learners ({' '.join(args.learners)}); "
            "a reference must be evaluated too"
        )


def load_trained(name: str):
    """The meta-learned learner ``name`` of ``--learners``; an unknown name raises naming
    every valid one."""
    from vsml_jax import pretrained
    from vsml_jax.loading import load_learner

    try:
        return load_learner(name)
    except FileNotFoundError as e:
        if Path(name).exists():
            raise
        shipped = [f"pretrained:{n}" for n in pretrained.available()]
        raise FileNotFoundError(
            f"--learners {name}: no such learner; give one of {', '.join(HAND_DESIGNED)}, "
            f"{', '.join(shipped)}, {ALL_SHIPPED}, a run directory or "
            "<run>/checkpoints/<step>"
        ) from e


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


def trained_entry(trained, spec):
    """The :class:`~vsml_jax.evaluation.Entry` of a meta-learned learner on episodes of
    ``spec``: it predicts among the tasks' ``spec.num_classes`` classes (VSML's V_M runs
    on any number of outputs; a learner with a fixed number predicts among its first
    ones, :func:`~vsml_jax.learners.base.first_classes`), reading each dataset through
    the preprocessing it was meta-trained with (:func:`learner_spec`)."""
    from vsml_jax.evaluation import Entry
    from vsml_jax.learners.base import first_classes

    learner, own = trained.learner, trained.task.num_classes
    if trained.config.learner != "vsml":
        if spec.num_classes > own:
            raise ValueError(
                f"learner {trained.name!r} has {own} outputs; these tasks have "
                f"{spec.num_classes} classes"
            )
        learner = first_classes(learner, own, spec.num_classes)
    return Entry(
        learner, trained.meta_params, lambda data: learner_spec(trained, spec, data.input_dim)
    )


def learner_spec(trained, spec, dataset_dim: int):
    """The episode spec ``trained`` reads: ``spec`` (its class count too) through the
    preprocessing it was meta-trained with
    (:meth:`~vsml_jax.loading.TrainedLearner.input_plan`)."""
    if spec.projection_prob > 0 and trained.config.data.projection_prob == 0:
        dataset_dim = spec.input_dim  # the tasks' own projection comes first
    how, a = trained.input_plan(dataset_dim)
    if how == "project":
        return dataclasses.replace(spec, input_dim=a, projection_prob=1.0)
    return dataclasses.replace(spec, input_dim=a)


class Prepared(NamedTuple):
    """What :func:`run` meta-tests: ``entries`` (label -> Entry, in ``--learners`` order),
    ``labels`` (name as typed -> label), ``datasets``, the shared episode ``spec`` and
    the lr ``searches`` of sgd/adam (name -> LrSearch)."""

    entries: dict
    labels: dict
    datasets: dict
    spec: object
    searches: dict


def prepare(args: EvaluateConfig) -> Prepared:
    """Load the data and the learners of ``args`` and tune sgd/adam (see :class:`Prepared`)."""
    from vsml_jax.build import episode_spec, load_arrays, place_data, run_key
    from vsml_jax.evaluation import tuned_baselines
    from vsml_jax.runtime.devices import population_mesh

    if not args.learners:
        raise ConfigError("give the learners to meta-test: --learners LEARNER [LEARNER ...]")
    args = dataclasses.replace(args, learners=tuple(expand_learners(args.learners)))
    mesh = population_mesh()
    hand = [n for n in args.learners if n in HAND_DESIGNED]
    trained = {n: load_trained(n) for n in args.learners if n not in HAND_DESIGNED}
    # the class count (the learners' outputs) is known once the arrays are loaded
    probe = data_config(args, 2)
    arrays = {n: load_arrays(probe, [n], args.split) for n in args.datasets}
    classes = max(a.num_classes for group in arrays.values() for a in group)
    cfg = data_config(args, classes)
    datasets = {n: place_data(cfg, a, mesh) for n, a in arrays.items()}
    spec = episode_spec(cfg, args.steps)
    baselines, searches = {}, {}
    if hand:
        tune = place_data(cfg, load_arrays(cfg, [args.tune_on], "train"), mesh)
        baselines, searches = tuned_baselines(
            hand, tune, spec, cfg.eval, run_key(args.seed, "baseline_lr"), args.lr_extensions
        )
    by_name = {label.split(" ")[0]: label for label in baselines}
    entries, labels = {}, {}
    for name in args.learners:  # in the order given
        if name in by_name:
            labels[name] = by_name[name]
            entries[by_name[name]] = baselines[by_name[name]]
        else:  # its spec depends on each dataset's input size (VSML reads any size)
            labels[name] = name
            entries[name] = trained_entry(trained[name], spec)
    for data in datasets.values():  # every learner fits every dataset, or one line says why
        for e in entries.values():
            if callable(e.spec):
                e.spec(data)
    return Prepared(entries, labels, datasets, spec, searches)


def save_curves(path: Path, curves: dict) -> None:
    """``curves.npz``: per dataset its ``[learners, episodes, steps]`` accuracy, and
    ``learners``, their labels in that order (the same for every dataset)."""
    import numpy as np

    from vsml_jax.runtime.files import save_npz

    learners = list(next(iter(curves.values())))
    arrays = {d: np.stack([by[label] for label in learners]) for d, by in curves.items()}
    save_npz(path, learners=np.array(learners), **arrays)


def run(args: EvaluateConfig, out: Path, resumed: bool = False) -> str | None:
    """Meta-test ``args`` and write the outputs into the run dir ``out`` (on ``--resume``:
    again, over the outputs there); returns the table and where it is (process 0)."""
    import jax

    from vsml_jax import plots
    from vsml_jax.build import run_key
    from vsml_jax.evaluation import (
        PAIRED_KEYS,
        meta_test,
        paired_markdown,
        paired_rows,
        write_table,
    )
    from vsml_jax.runtime.cli import staged_results

    prep = prepare(args)
    rows, curves = meta_test(
        prep.entries, prep.datasets, prep.spec, args.episodes, run_key(args.seed, "meta_test")
    )
    name_of = {label: name for name, label in prep.labels.items()}
    paired = paired_rows(curves, [prep.labels[r] for r in args.reference])
    paired_of = {}  # results.csv: d_mean_vs_adam, ... (the reference as typed)
    for p in paired:
        suffix = f"_vs_{name_of[p['reference']]}"
        own = paired_of.setdefault((p["dataset"], p["learner"]), {})
        own.update({k + suffix: p[k] for k in PAIRED_KEYS})
    parts = [
        result_row(
            row,
            prep.searches.get(name_of[row["learner"]]),
            paired_of.get((row["dataset"], row["learner"]), {}),
            args.reference,
        )
        for row in rows
    ]
    notes = []
    for name, search in prep.searches.items():
        if not search.interior:
            notes.append(f"Warning: {search.edge_note(name)}.")
    for r in args.reference:
        notes += ["", *paired_markdown(paired, prep.labels[r])]

    if jax.process_index() != 0:
        return None
    md = tuple(parts[0][0])  # the lr is in the label, an edge lr in the notes
    write_table([{**head, **tail} for head, tail in parts], out, tuple(notes), md_columns=md)
    save_curves(out / "curves.npz", curves)
    searches = {
        name: {
            "lr": s.lr,
            "interior": s.interior,
            "lrs": list(s.lrs),
            "mean_online_loss": [float(x) if math.isfinite(x) else None for x in s.losses],
        }
        for name, s in prep.searches.items()
    }
    (out / "lr_search.json").write_text(json.dumps(searches, indent=2) + "\n")
    title = f"{args.episodes} episodes of {args.steps} steps per dataset"
    plots.plot_accuracy_curves(curves, out / "curves.png", title=title)
    plots.plot_accuracy_curves(curves, out / "curves_logx.png", title=title, log_x=True)
    return staged_results(out, "results.csv, results.md, curves.npz, curves.png")


RESUME_HELP = (
    "evaluate again, with the config saved there, into the latest evaluate run (or "
    "RUN_DIR), rewriting its outputs: an evaluation keeps no partial work, and only "
    "out_dir, data_dir and cpu_devices may change"
)


def command():
    """``python -m vsml_jax.evaluate`` as a :class:`~vsml_jax.runtime.cli.Command`."""
    from vsml_jax.runtime.cli import Command

    return Command(
        description=__doc__,
        preset=None,
        run=run,
        config_cls=EvaluateConfig,
        set_example="episodes=32",
        resume_safe=("name", "out_dir", "data_dir", "cpu_devices"),
        add_args=add_args,
        overrides=overrides,
        resume_help=RESUME_HELP,
        prog="python -m vsml_jax.evaluate",
    )


def main(argv=None) -> int:
    from vsml_jax.runtime.cli import run_command

    return run_command(command(), argv)


if __name__ == "__main__":
    sys.exit(main())
