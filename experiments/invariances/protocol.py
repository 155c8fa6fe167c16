"""Robustness to input and output changes (the paper's §4.3, Fig. 7).

1. **Meta-train** one VSML with ES on a *task mixture*: per task a random subset of
   ``train_class_subsets`` classes (relabelled, the outputs stay ``num_classes``), the
   images at one of ``train_sizes`` (a per-generation choice among precompiled grids:
   one V_M, several static shapes), a random projection on ``train_projection_prob`` of
   the tasks. On the same budget and from the same start, a second VSML is meta-trained
   on the *plain* task only: all classes at ``native_size``.
2. **Meta-test** both, with no retraining, on configurations the mixture never saw
   (``test_cases``: other class counts, other image sizes, a projection, a pixel
   permutation) on every ``test_sets`` test split, against the hand-designed online
   learners of ``base.eval.baselines`` (SGD/Adam with the learning rate tuned on the
   meta-training split of the same configuration), all on the same episodes.

A size is chosen per generation rather than per member: every member of a generation
runs on the same grid, so the population stays one ``vmap`` of static shapes, and the
``lax.switch`` over the precompiled sizes runs one branch. (Padding every task to the
largest grid with a mask would make the small tasks as costly as the largest.)

Every stage writes under ``run_dir`` and is skipped when its output exists, so rerunning
on the same folder (``--resume``) continues where a killed run stopped.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import jax

from vsml_jax import plots
from vsml_jax import train as training
from vsml_jax.build import load_arrays, run_key
from vsml_jax.config import ConfigError, RunConfig
from vsml_jax.data import to_device
from vsml_jax.data.episodes import DeviceDataset, EpisodeSpec
from vsml_jax.evaluation import (
    cached_accuracy,
    cached_hand_designed,
    summarize,
    summary_row,
    write_table,
)
from vsml_jax.learners.base import TaskSpec
from vsml_jax.learners.vsml import vsml
from vsml_jax.loading import restore_run
from vsml_jax.meta import es
from vsml_jax.runtime.devices import (
    check_population,
    population_mesh,
    replicate,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TestCase:
    """One meta-test configuration: square images of side ``size`` (None: the native
    size), ``classes`` random classes per task (relabelled; None: all), an optional fresh
    random projection (``D -> D``) or pixel permutation per task."""

    label: str = ""
    size: int | None = None
    classes: int | None = None
    projection: bool = False
    permute: bool = False

    def __post_init__(self):
        if not self.label:
            raise ConfigError("every test case needs a label, e.g. {label: 5 classes, classes: 5}")
        if self.size is not None and self.size < 1:
            raise ConfigError(f"test case {self.label!r}: size must be >= 1, got {self.size}")


DEFAULT_CASES = (
    TestCase("5 classes", classes=5),
    TestCase("10 classes"),
    TestCase("7x7 inputs", size=7),
    TestCase("14x14 inputs", size=14),
    TestCase("projection", projection=True),
    TestCase("permutation", permute=True),
)


@dataclasses.dataclass(frozen=True)
class InvariancesConfig:
    """The task mixture, the plain task, the meta-test cases.

    ``base`` holds the ES settings (``base.es``), the network (``base.network``, unless
    ``init_pretrained`` names a shipped learner whose network and meta-parameters both
    runs start from), the meta-training data (``base.data.train_sets``,
    ``episode_length``, ``num_classes``) and the meta-test (``base.eval``: episodes,
    length, baselines, their lr grid and hidden sizes).
    """

    name: str = "invariances"
    out_dir: str = "runs"
    seed: int = 0
    native_size: int = 8  # side of the plain task's images (the paper: 28)
    train_sizes: tuple[int, ...] = (8, 6, 10)  # the paper: 28, 14, 32
    train_class_subsets: tuple[int, ...] = (3, 4, 6, 7)
    train_projection_prob: float = 0.5
    plain_projection_prob: float = 0.5  # the plain task (the §4.2 setting)
    plain: bool = True  # also meta-train the plain-task VSML (same budget, same start)
    init_pretrained: str | None = "clone_backprop_es"  # start both from this shipped V_M
    test_sets: tuple[str, ...] = ("mnist", "fashion_mnist")
    test_cases: tuple[TestCase, ...] = DEFAULT_CASES
    base: RunConfig = RunConfig()

    def __post_init__(self):
        if self.base.learner != "vsml":
            raise ConfigError("invariances meta-trains VSML; base.learner must be vsml")
        if not self.train_sizes or min(self.train_sizes) < 1 or self.native_size < 1:
            raise ConfigError("train_sizes and native_size must be positive image sides")
        c = self.base.data.num_classes
        for k in (*self.train_class_subsets, *(t.classes or c for t in self.test_cases)):
            if not 1 <= k <= c:
                raise ConfigError(f"class counts must be in 1..base.data.num_classes={c}, got {k}")
        for p in (self.train_projection_prob, self.plain_projection_prob):
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"projection probabilities must be in [0, 1], got {p}")
        labels = [t.label for t in self.test_cases]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"test_cases need distinct labels, got {labels}")


# --------------------------------------------------------------------------- meta-training


def mixture_evaluate(evaluates):
    """``evaluate(population, key)`` that runs one of ``evaluates`` (each a population
    evaluation on its own static grid), chosen uniformly per call from ``key``."""
    if len(evaluates) == 1:
        return evaluates[0]

    def evaluate_pop(population, key):
        k_choice, k_eval = jax.random.split(key)
        i = jax.random.randint(k_choice, (), 0, len(evaluates))
        return jax.lax.switch(i, evaluates, population, k_eval)

    return evaluate_pop


def start_point(cfg: InvariancesConfig):
    """``(network config, meta_params)`` both runs start from."""
    task = TaskSpec(cfg.native_size**2, cfg.base.data.num_classes)
    if cfg.init_pretrained:
        from vsml_jax import pretrained

        p = pretrained.load(cfg.init_pretrained)
        return p.config.network, p.meta_params
    return cfg.base.network, vsml(cfg.base.network).meta_init(run_key(cfg.seed, "meta_init"), task)


def stage_config(cfg: InvariancesConfig, name: str, network, size: int, proj: float) -> RunConfig:
    """How a stage's run directory describes itself (a VSML run that ``restore_run``,
    ``init_from`` and ``ship_pretrained`` read): its native image size and projection."""
    data = dataclasses.replace(
        cfg.base.data, image_size=(size, size), input_dim=None, projection_prob=proj
    )
    ev = dataclasses.replace(cfg.base.eval, datasets=(), every=0)
    return dataclasses.replace(
        cfg.base,
        name=name,
        seed=cfg.seed,
        network=network,
        data=data,
        eval=ev,
        init_from=None,
        tensorboard=False,
    )


def meta_train(
    cfg: InvariancesConfig, run_dir: Path, train_data: dict, sizes, spec: EpisodeSpec, mesh
):
    """ES on the tasks ``spec`` over images of ``sizes`` (``train_data[size]``), into the
    run directory ``run_dir`` (:func:`vsml_jax.train.train` with the task mixture as the
    ES evaluation); returns the final mean meta-parameters. A finished stage is read
    back; a killed one resumes from its last checkpoint."""
    if not (run_dir / "summary.json").exists():
        network, meta_params = start_point(cfg)
        learner = vsml(network)
        c = cfg.base.data.num_classes
        run_cfg = stage_config(cfg, run_dir.name, network, sizes[0], spec.projection_prob)

        def job(run_cfg, mesh):
            evaluates = [es.make_evaluate(learner, train_data[s], spec, c, mesh) for s in sizes]
            mixture = mixture_evaluate(evaluates)
            trainer = es.es_trainer(run_cfg.es, learner, meta_params, None, spec, c, mesh, mixture)
            return training.Job(learner, TaskSpec(sizes[0] ** 2, c), meta_params, trainer)

        resume = run_dir if (run_dir / "config.yaml").exists() else False
        training.train(run_cfg, resume=resume, run_dir=run_dir, job=job)
    return restore_run(run_dir)[2]


# --------------------------------------------------------------------------- meta-test


def case_spec(cfg: InvariancesConfig, case: TestCase, length: int) -> EpisodeSpec:
    return EpisodeSpec(
        length=length,
        num_classes=cfg.base.data.num_classes,
        projection_prob=1.0 if case.projection else 0.0,
        permute_pixels=case.permute,
        class_subset_sizes=None if case.classes is None else (case.classes,),
    )


class SizedData:
    """DeviceDatasets of one split at each square image side, made on first use."""

    def __init__(self, cfg: InvariancesConfig, names, split: str, mesh):
        self.arrays = load_arrays(cfg.base, names, split)
        self.mesh, self._by_size = mesh, {}

    def __getitem__(self, size: int) -> DeviceDataset:
        if size not in self._by_size:
            data = to_device(self.arrays, image_size=(size, size))
            self._by_size[size] = replicate(data, self.mesh, readonly=True)
        return self._by_size[size]


def _tag(label: str) -> str:
    """A file-name form of a label; distinct labels give distinct tags."""
    return "".join(ch if ch.isalnum() else "_" for ch in label).strip("_")


META_RNN_NOTE = (
    "The Meta RNN (learners/meta_rnn.py) reads a fixed-size input vector and writes a "
    "fixed number of logits: it cannot run the configurations whose input size differs "
    "from its training size (here: {sizes}) without new meta-parameters; with outputs "
    "padded to {c} it can run the class-count cases, and the projection and permutation "
    "cases at its training size. It is not meta-trained here."
)


def run(cfg: InvariancesConfig, run_dir: Path) -> list[dict]:
    """All stages; returns the result rows (also ``results.csv`` / ``results.md`` and
    ``figure.png`` under ``run_dir``)."""
    base = cfg.base
    mesh = population_mesh()
    check_population(base.es.population_size, mesh)
    train = SizedData(cfg, base.data.train_sets, "train", mesh)
    c, T = base.data.num_classes, base.data.episode_length
    network, _ = start_point(cfg)

    mix_spec = EpisodeSpec(
        length=T,
        num_classes=c,
        projection_prob=cfg.train_projection_prob,
        class_subset_sizes=tuple(cfg.train_class_subsets),
    )
    sizes = tuple(dict.fromkeys(cfg.train_sizes))
    vsmls = {
        "VSML (task mixture)": meta_train(cfg, run_dir / "mixture", train, sizes, mix_spec, mesh)
    }
    if cfg.plain:
        plain_spec = EpisodeSpec(length=T, num_classes=c, projection_prob=cfg.plain_projection_prob)
        vsmls["VSML (plain task)"] = meta_train(
            cfg, run_dir / "plain", train, (cfg.native_size,), plain_spec, mesh
        )
    learner = vsml(network)

    ev = base.eval
    rows = []
    for i, test_set in enumerate(cfg.test_sets):
        test = SizedData(cfg, [test_set], ev.split, mesh)
        for j, case in enumerate(cfg.test_cases):
            size = case.size or cfg.native_size
            spec = case_spec(cfg, case, ev.episode_length)
            key = jax.random.fold_in(jax.random.fold_in(run_key(cfg.seed, "meta_test"), i), j)
            learners = {label: (learner, mp, None) for label, mp in vsmls.items()}
            for name in ev.baselines:
                lr_cache = run_dir / "meta_test" / f"lr_{_tag(case.label)}_{name}.json"
                b, lr = cached_hand_designed(
                    name,
                    lr_cache,
                    train[size],
                    spec,
                    ev.num_episodes,
                    ev.baseline_hidden,
                    ev.baseline_lrs,
                    run_key(cfg.seed, f"baseline_lr/{size}"),
                )
                learners[name] = (b, {}, lr)
            for label, (lrn, mp, lr) in learners.items():
                path = run_dir / "meta_test" / f"{test_set}__{_tag(case.label)}__{_tag(label)}.npz"
                acc = cached_accuracy(path, lrn, mp, test[size], spec, ev.num_episodes, key)
                rows.append(
                    {
                        "test_set": test_set,
                        "config": case.label,
                        "learner": label,
                        "lr": lr,
                        "seen": _seen(cfg, case),
                        **summary_row(summarize(acc)),
                    }
                )
            log.info("meta-tested %s / %s", test_set, case.label)
    write_results(cfg, rows, run_dir)
    plot_results(rows, run_dir / "figure.png")
    return rows


def _seen(cfg: InvariancesConfig, case: TestCase) -> bool:
    """Whether the task mixture contained this configuration."""
    size = case.size or cfg.native_size
    classes_seen = (case.classes or cfg.base.data.num_classes) in cfg.train_class_subsets
    proj_ok = cfg.train_projection_prob > 0 if case.projection else cfg.train_projection_prob < 1
    return size in cfg.train_sizes and classes_seen and proj_ok and not case.permute


def write_results(cfg: InvariancesConfig, rows: list[dict], run_dir: Path) -> None:
    unseen = sorted({t.size or cfg.native_size for t in cfg.test_cases} - {cfg.native_size})
    notes = (
        f"Task mixture: classes {list(cfg.train_class_subsets)} of "
        f"{cfg.base.data.num_classes}, sizes {list(cfg.train_sizes)}, projection on "
        f"{cfg.train_projection_prob:g} of the tasks; plain task: all classes at "
        f"{cfg.native_size}x{cfg.native_size}, projection on {cfg.plain_projection_prob:g}.",
        META_RNN_NOTE.format(
            sizes=", ".join(f"{s}x{s}" for s in unseen), c=cfg.base.data.num_classes
        ),
    )
    write_table(rows, run_dir, notes)


def plot_results(rows: list[dict], path: Path) -> None:
    """Fig. 7 style: per test set, accuracy over the first 100 steps and over the whole
    episode, one group of bars per configuration."""
    panels = {}
    for test_set in dict.fromkeys(r["test_set"] for r in rows):
        sub = [r for r in rows if r["test_set"] == test_set]
        panels[f"{test_set}: steps 1-100"] = (sub, "first100_acc", "first100_ci95")
        panels[f"{test_set}: whole episode"] = (sub, "mean_acc", "ci95")
    plots.plot_grouped_bars(panels, path, group_key="config", bar_key="learner")
