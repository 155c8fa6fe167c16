"""Cross-dataset benchmark of learning algorithms (the paper's Section 4.4, Fig. 8).

Every learning algorithm (LA) is meta-trained on a group of datasets and
meta-tested with online episodes on the test splits of every test dataset, each
marked *seen* or *unseen* in meta-training. All LAs go through the same
:func:`vsml_jax.train.train` (ES or meta-gradients, checkpoints) and the same
:func:`vsml_jax.evaluation.meta_test`; every LA sees the same meta-test episodes.

Hand-designed LAs have no meta-parameters: online SGD / Adam get their learning
rate grid-searched on episodes of the meta-training group instead; the nearest
class mean and k-NN (``ncm``, ``knn``, ``1nn``) are evaluated as they are.

All tasks share one input format, as the paper does for its baselines: grey,
28x28, standardised per dataset, labels padded to the largest class count; the
episode sampler then applies the configured per-task random projection.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import jax
import numpy as np

from vsml_jax import plots
from vsml_jax.build import episode_spec, load_arrays, place_data, run_key
from vsml_jax.config import (
    HAND_DESIGNED,
    ConfigError,
    RunConfig,
)
from vsml_jax.data import DatasetNotFoundError, available_splits
from vsml_jax.evaluation import (
    Entry,
    meta_test,
    paired_difference,
    paired_rows,
    summarize,
    summary_row,
    write_table,
)
from vsml_jax.learners import LEARNERS
from vsml_jax.runtime.devices import population_mesh
from vsml_jax.stages import (
    cached_curves,
    learner_name,
    stage_config,
    train_or_load,
    tuned_hand_designed,
)

log = logging.getLogger(__name__)

ALL_SETS = ("mnist", "fashion_mnist", "kmnist", "emnist", "cifar10", "random", "sum")


@dataclasses.dataclass(frozen=True)
class CrossDatasetConfig:
    """What to meta-train on what, and what to meta-test on.

    ``train_sets`` entries are groups: a dataset name, names joined by ``+``,
    ``all`` (every test set that has a train split) or ``loo`` (one group per
    test set: all the others). An LA is a learner name, optionally with a variant
    tag (``maml@fo``, ``learned_optimizer@grad``) so one learner can be run in
    several ways. ``la_overrides[la]`` is a list of ``key=value`` overrides of
    ``base`` for that LA (e.g. ``learner_args={hidden: 32}`` or ``trainer=grad``).
    """

    name: str = "cross_dataset"
    out_dir: str = "runs"
    las: tuple[str, ...] = (
        "vsml",
        "meta_rnn",
        "hebbian",
        "fw_memory",
        "fwp",
        "sgd",
        "adam",
        "ncm",
        "knn",
        "1nn",
    )
    train_sets: tuple[str, ...] = ("mnist",)
    test_sets: tuple[str, ...] = ("mnist", "fashion_mnist", "kmnist", "cifar10", "random", "sum")
    la_overrides: dict = dataclasses.field(default_factory=dict)
    base: RunConfig = RunConfig()  # the CPU default: configs/cross_dataset.yaml

    def __post_init__(self):
        for la in (*self.las, *self.la_overrides):
            if learner_name(la) not in LEARNERS:
                raise ConfigError(
                    f"unknown LA {la!r} in las/la_overrides; known: {', '.join(sorted(LEARNERS))}"
                )
        for la in self.las:
            if "@" in la and la not in self.la_overrides:
                tagged = sorted(x for x in self.la_overrides if "@" in x)
                raise ConfigError(
                    f"unknown LA variant {la!r}: a tagged LA needs its overrides in "
                    f"la_overrides (defined variants: {', '.join(tagged) or 'none'})"
                )
        for name in self.test_sets:
            if name not in ALL_SETS:
                raise ConfigError(f"unknown test set {name!r}; known: {', '.join(ALL_SETS)}")


def _has_split(name: str, split: str, data_dir) -> bool:
    try:
        return split in available_splits(name, data_dir)
    except DatasetNotFoundError as e:  # e.g. emnist: supported, but not prepared here
        log.warning("skipping %s: %s", name, e)
        return False


def resolve_groups(cfg: CrossDatasetConfig) -> tuple[list[str], list[tuple[str, ...]]]:
    """The test sets present, and the meta-training groups (each a tuple of datasets)."""
    data_dir = cfg.base.data.data_dir
    tests = [t for t in cfg.test_sets if _has_split(t, "test", data_dir)]
    trainable = [t for t in tests if _has_split(t, "train", data_dir)]
    groups: list[tuple[str, ...]] = []
    for entry in cfg.train_sets:
        if entry == "all":
            groups.append(tuple(trainable))
        elif entry == "loo":
            groups.extend(tuple(x for x in trainable if x != held) for held in tests)
        else:
            names = tuple(entry.split("+"))
            for n in names:
                if n not in ALL_SETS:
                    raise ConfigError(f"unknown meta-training set {n!r} in {entry!r}")
            missing = [n for n in names if not _has_split(n, "train", data_dir)]
            if missing:
                raise ConfigError(f"meta-training set(s) {missing} have no train split here")
            groups.append(names)
    unique = list(dict.fromkeys(g for g in groups if g))
    if not unique:
        raise ConfigError("no meta-training group has any dataset with a train split")
    return tests, unique


def la_config(cfg: CrossDatasetConfig, la: str, group: tuple[str, ...]) -> RunConfig:
    """The base run config specialised to one LA and one meta-training group."""
    return stage_config(cfg.base, la, group, cfg.la_overrides.get(la, ()))


def run(cfg: CrossDatasetConfig, run_dir: Path) -> list[dict]:
    """Meta-train every (LA, group), meta-test on every test set; write table and figure.

    Finished work is cached under ``run_dir`` (``meta_train/*/summary.json``,
    ``meta_test/*.npz``), so calling ``run`` again on the same folder recomputes nothing.
    """
    is_main = jax.process_index() == 0
    mesh = population_mesh()
    tests, groups = resolve_groups(cfg)
    log.info("test sets %s; meta-training groups %s", tests, groups)
    # every task is padded to the largest class count of the run
    test_arrays = {t: load_arrays(cfg.base, [t], "test") for t in tests}
    classes = max(a.num_classes for arrays in test_arrays.values() for a in arrays)
    data_cfg = dataclasses.replace(
        cfg.base.data, num_classes=max(classes, cfg.base.data.num_classes)
    )
    cfg = dataclasses.replace(cfg, base=dataclasses.replace(cfg.base, data=data_cfg))
    base = cfg.base
    test_data = {t: place_data(base, test_arrays[t], mesh) for t in tests}
    rows, curves = [], {}
    for la in cfg.las:
        for group in groups:
            run_cfg = la_config(cfg, la, group)
            sub = run_dir / "meta_train" / run_cfg.name

            def compute(la=la, run_cfg=run_cfg, sub=sub):
                if learner_name(la) in HAND_DESIGNED:
                    learner, _ = tuned_hand_designed(run_cfg, sub, mesh)
                    params = {}
                else:
                    learner, params = train_or_load(run_cfg, sub)
                _, by_test = meta_test(
                    {la: Entry(learner, params)},
                    test_data,
                    episode_spec(base, base.eval.episode_length),
                    base.eval.num_episodes,
                    run_key(base.seed, "meta_test"),
                )
                return {t: by_test[t][la] for t in tests}

            saved = cached_curves(run_dir / "meta_test" / f"{run_cfg.name}.npz", compute)
            for t in tests:
                rows.append(result_row(la, group, t, saved[t]))
                curves.setdefault("+".join(group), {}).setdefault(t, {})[la] = saved[t]
            log.info("%s on %s: done", la, "+".join(group))
    add_comparisons(rows, curves)
    if is_main:
        write_outputs(rows, curves, run_dir)
        plot_meta_losses(run_dir, classes)
    return rows


REFERENCE = "adam"  # every row's paired difference to this LA (add_comparisons)


def result_row(la: str, group: tuple[str, ...], test_set: str, acc) -> dict:
    """A row of ``results.csv``: ``la`` meta-trained on ``group``, meta-tested on
    ``test_set`` (accuracy ``acc`` ``[N, T]``). Its generalisation gap and paired
    difference to :data:`REFERENCE` need the other rows: :func:`add_comparisons` fills
    them in."""
    s = summarize(acc)
    return {
        "la": la,
        "train_sets": "+".join(group),
        "test_set": test_set,
        "seen": test_set in group,
        **summary_row(s, ("mean_acc", "first100_acc", "last100_acc", "ci95", "first100_ci95")),
        "gap_mean": None,
        "gap_first100": None,
        f"vs_{REFERENCE}_first100": None,
        f"vs_{REFERENCE}_first100_ci95": None,
        **summary_row(s, ("steps_to_50", "steps_to_80", "episodes", "steps")),
    }


def add_comparisons(rows: list[dict], curves: dict, reference: str = REFERENCE) -> None:
    """Add to every row its LA's generalisation gap and its paired difference to
    ``reference``.

    ``gap_mean`` / ``gap_first100``: for the row's LA and meta-training group, the mean
    accuracy (whole episode / steps 1-100) on the seen test sets minus the mean over the
    unseen ones (None without both). ``vs_<reference>_first100`` (and ``_ci95``): the
    mean over episodes of this LA's steps 1-100 accuracy minus the reference's on the
    same episodes, with its paired 95% interval half-width (None for the reference
    itself or when it was not run). ``curves[group][test][la]`` are ``[N, T]``."""
    key = f"vs_{reference}_first100"
    by_la: dict = {}
    for r in rows:
        by_la.setdefault((r["la"], r["train_sets"]), []).append(r)
    for (la, group), own in by_la.items():
        seen = [r for r in own if r["seen"]]
        unseen = [r for r in own if not r["seen"]]
        for metric, col in (("mean_acc", "gap_mean"), ("first100_acc", "gap_first100")):
            gap = None
            if seen and unseen:
                gap = float(
                    np.mean([r[metric] for r in seen]) - np.mean([r[metric] for r in unseen])
                )
            for r in own:
                r[col] = gap
        for r in own:
            by_test = curves.get(group, {}).get(r["test_set"], {})
            r[key] = r[f"{key}_ci95"] = None
            if la == reference or reference not in by_test:
                continue
            d = paired_difference(by_test[la], by_test[reference])
            r[key], r[f"{key}_ci95"] = d["d_first100"], d["d_first100_ci95"]


def gap_notes(rows: list[dict]) -> tuple[str, ...]:
    """A Markdown table of every (LA, group)'s generalisation gap, for ``results.md``."""
    lines = [
        "Generalisation gap: accuracy on the seen test sets minus the mean over the unseen "
        "ones (whole episode / steps 1-100).",
        "",
        "| la | train_sets | gap_mean | gap_first100 |",
        "|---|---|---|---|",
    ]
    done = set()
    for r in rows:
        if (r["la"], r["train_sets"]) in done or r.get("gap_mean") is None:
            continue
        done.add((r["la"], r["train_sets"]))
        lines.append(
            f"| {r['la']} | {r['train_sets']} | {r['gap_mean']:.3f} | {r['gap_first100']:.3f} |"
        )
    return tuple(lines) if done else ()


def plot_meta_losses(run_dir: Path, num_classes: int) -> None:
    """``meta_loss.png``: the meta-loss curve of every meta-trained LA of the run."""
    from vsml_jax.runtime.metrics import read_metrics

    curves = {}
    for sub in sorted((run_dir / "meta_train").glob("*/metrics.jsonl")):
        losses = [r["meta_loss"] for r in read_metrics(sub.parent) if "meta_loss" in r]
        if losses:
            curves[sub.parent.name] = np.asarray(losses, np.float64)
    plots.plot_meta_loss_curves(
        curves, run_dir / "meta_loss.png", chance=float(np.log(num_classes))
    )


def write_outputs(rows: list[dict], curves: dict, run_dir: Path):
    """results.csv/.md, paired.csv/.md (every LA minus each hand-designed LA of its
    meta-training group, on the same episodes), the curves and the figure."""
    write_table(rows, run_dir, notes=gap_notes(rows))
    refs = [la for la in dict.fromkeys(r["la"] for r in rows) if learner_name(la) in HAND_DESIGNED]
    paired = [
        {"train_sets": group, "test_set": p.pop("dataset"), "la": p.pop("learner"), **p}
        for group, by_test in curves.items()
        for p in paired_rows(by_test, refs)
    ]
    write_table(paired, run_dir, stem="paired")
    for group, by_test in curves.items():
        title = f"meta-trained on {group}; seen: " + ", ".join(
            t for t in by_test if t in group.split("+")
        )
        plots.plot_accuracy_curves(by_test, run_dir / f"curves__{group}.png", title=title)
    plots.plot_accuracy_grid(rows, run_dir / "figure.png")
