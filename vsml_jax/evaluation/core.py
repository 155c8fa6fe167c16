"""Meta-test evaluation: online episodes of any learner on held-out data.

Every learner evaluated with the same ``key`` sees exactly the same episodes
(inputs, labels, projections), so curves of different learners are paired.
:func:`meta_test` is the one meta-test routine: training's periodic meta-tests
(:class:`MetaTest`), the cross-dataset benchmark and ``python -m vsml_jax.evaluate`` all
call it, and :func:`paired_difference` is their one comparison of two learners on the
same episodes.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from vsml_jax.data.episodes import DeviceDataset, EpisodeSpec, sample_episode
from vsml_jax.episode import run_episode
from vsml_jax.evaluation.tuning import MAX_EXTENSIONS, LrSearch, tune_lr
from vsml_jax.learners.base import Learner, PyTree
from vsml_jax.learners.sgd import online_optimizer
from vsml_jax.runtime.files import load_npz, save_npz, write_text

log = logging.getLogger(__name__)


class Curves(NamedTuple):
    """Per-episode, per-step online accuracy and loss: ``[N, T]`` each."""

    accuracy: np.ndarray
    loss: np.ndarray


@functools.partial(jax.jit, static_argnames=("spec", "num"))
def sample_eval_episodes(data: DeviceDataset, spec: EpisodeSpec, num: int, key: jax.Array):
    """``num`` episodes ``([N, T, D], [N, T])`` and per-episode learner-init keys ``[N, 2]``."""

    def one(k):
        k_episode, k_init = jax.random.split(k)
        xs, labels = sample_episode(k_episode, data, spec)
        return xs, labels, k_init

    return jax.vmap(one)(jax.random.split(key, num))


@functools.lru_cache(maxsize=64)
def _episode_runner(learner: Learner, num_classes: int):
    """One jitted function per (learner, class count): repeated meta-tests reuse the compile."""

    @jax.jit
    def run(meta_params, xs, labels, init_keys):
        def one(x, y, k):
            r = run_episode(learner, meta_params, x, y, k, num_classes)
            return r.accuracy, r.loss

        return jax.vmap(one)(xs, labels, init_keys)

    return run


def evaluate(
    learner: Learner,
    meta_params: PyTree,
    data: DeviceDataset,
    spec: EpisodeSpec,
    num_episodes: int,
    key: jax.Array,
) -> Curves:
    """Online accuracy/loss curves of ``learner`` on ``num_episodes`` episodes."""
    xs, labels, init_keys = sample_eval_episodes(data, spec, num_episodes, key)
    acc, loss = _episode_runner(learner, spec.num_classes)(meta_params, xs, labels, init_keys)
    return Curves(np.asarray(acc), np.asarray(loss))


def _ci95(per_episode: np.ndarray) -> float:
    """The 95% interval half-width of the mean of per-episode values (normal
    approximation; nan for one episode)."""
    n = len(per_episode)
    return float(1.96 * per_episode.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def summarize(acc: np.ndarray) -> dict:
    """Scalar summaries of ``[N, T]`` accuracy: mean, first and last 100 steps, their
    95% intervals over episodes, and speed.

    ``steps_to_50``/``steps_to_80`` are the first steps at which the across-episode
    mean accuracy (smoothed over ``T // 20`` steps) reaches 50% / 80% of its final
    (last-100-step) level.
    """
    acc = np.asarray(acc, np.float64)
    n, T = acc.shape
    per_episode = acc.mean(1)
    first = acc[:, : min(100, T)].mean(1)
    last_per_episode = acc[:, -min(100, T) :].mean(1)
    last = last_per_episode.mean()
    window = max(1, T // 20)
    kernel = np.ones(window) / window
    curve = np.convolve(acc.mean(0), kernel, mode="full")[:T] / np.minimum(
        np.arange(1, T + 1) / window, 1.0
    )
    out = {
        "mean_acc": float(per_episode.mean()),
        "first100_acc": float(first.mean()),
        "first100_ci95": _ci95(first),
        "last100_acc": float(last),
        "last100_ci95": _ci95(last_per_episode),
        "ci95": _ci95(per_episode),
        "episodes": n,
        "steps": T,
    }
    for frac in (0.5, 0.8):
        hit = np.nonzero(curve >= frac * last)[0]
        out[f"steps_to_{int(frac * 100)}"] = int(hit[0]) + 1 if hit.size else None
    return out


# the accuracy columns of a results-table row, in order (:func:`summary_row`)
ROW_SUMMARY = (
    "first100_acc",
    "first100_ci95",
    "mean_acc",
    "ci95",
    "last100_acc",
    "episodes",
    "steps",
)


# the summaries of a row of the evaluate/simple_baselines results.csv, in order
EVAL_SUMMARY = (
    "first100_acc",
    "first100_ci95",
    "mean_acc",
    "ci95",
    "last100_acc",
    "last100_ci95",
    "steps_to_80",
    "episodes",
    "steps",
)


def summary_row(summary: dict, keys: tuple[str, ...] = ROW_SUMMARY) -> dict:
    """The entries ``keys`` of a :func:`summarize` dict, in that order: the accuracy
    columns of a results-table row (:func:`write_table` takes its columns from the rows)."""
    return {k: summary[k] for k in keys}


PAIRED_WINDOWS = ("first100", "mean", "last100")  # steps 1-100, all steps, the last 100


def paired_difference(acc: np.ndarray, reference: np.ndarray) -> dict:
    """``acc`` minus ``reference``, two ``[N, T]`` accuracy curves on the same episodes.

    For each window of :data:`PAIRED_WINDOWS` (steps 1-100, the whole episode, the last
    100 steps) the per-episode mean accuracies are differenced episode by episode:
    ``d_<window>`` is the mean difference, ``d_<window>_ci95`` its 95% interval over
    episodes (normal approximation, as in :func:`summarize`; nan for one episode),
    ``wins_<window>`` / ``losses_<window>`` the episodes where ``acc`` is above / below.
    """
    acc, reference = np.asarray(acc, np.float64), np.asarray(reference, np.float64)
    if acc.ndim != 2 or acc.shape != reference.shape:
        raise ValueError(
            f"paired curves need the same [episodes, steps] shape, got {acc.shape} and "
            f"{reference.shape}"
        )
    T = acc.shape[1]
    w = min(100, T)
    out = {}
    for name, part in zip(PAIRED_WINDOWS, (slice(0, w), slice(0, T), slice(T - w, T)), strict=True):
        d = acc[:, part].mean(1) - reference[:, part].mean(1)
        out[f"d_{name}"] = float(d.mean())
        out[f"d_{name}_ci95"] = _ci95(d)
        out[f"wins_{name}"] = int((d > 0).sum())
        out[f"losses_{name}"] = int((d < 0).sum())
    return out


def paired_columns(acc: np.ndarray, references: Mapping[str, np.ndarray]) -> dict:
    """:func:`paired_difference` of ``acc`` against each named reference curve, its keys
    suffixed ``_vs_<name>`` (one flat row, e.g. ``d_mean_vs_adam``)."""
    return {
        f"{k}_vs_{name}": v
        for name, ref in references.items()
        for k, v in paired_difference(acc, ref).items()
    }


# the keys of paired_difference, in its order
PAIRED_KEYS = tuple(
    k for w in PAIRED_WINDOWS for k in (f"d_{w}", f"d_{w}_ci95", f"wins_{w}", f"losses_{w}")
)


def paired_rows(curves: Mapping[str, Mapping[str, np.ndarray]], references) -> list[dict]:
    """Long-form paired differences: for each dataset of ``curves`` (``{dataset: {learner:
    [N, T]}}``), each of ``references`` and each other learner, one row ``{dataset,
    learner, reference, **paired_difference(learner, reference)}``."""
    return [
        {"dataset": d, "learner": label, "reference": ref, **paired_difference(acc, by[ref])}
        for d, by in curves.items()
        for ref in references
        if ref in by
        for label, acc in by.items()
        if label != ref
    ]


def paired_markdown(rows: list[dict], reference: str) -> list[str]:
    """Markdown lines: the :func:`paired_rows` against ``reference`` as a table,
    "difference ± 95% interval (wins/losses)" per window."""
    lines = [
        f"Paired difference to {reference} (accuracy; ± 95% interval over episodes; "
        "wins/losses: episodes above/below it)",
        "",
        "| dataset | learner | steps 1–100 | whole episode | last 100 steps |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if r["reference"] != reference:
            continue
        cells = [
            f"{r[f'd_{w}']:+.3f} ± {r[f'd_{w}_ci95']:.3f} ({r[f'wins_{w}']}/{r[f'losses_{w}']})"
            for w in PAIRED_WINDOWS
        ]
        lines.append(f"| {r['dataset']} | {r['learner']} | " + " | ".join(cells) + " |")
    return lines


def tuned_learner(
    name: str,
    data: DeviceDataset,
    spec: EpisodeSpec,
    num_episodes: int,
    hidden: tuple[int, ...],
    lrs: tuple[float, ...],
    key: jax.Array,
    max_extensions: int = MAX_EXTENSIONS,
) -> tuple[Learner, LrSearch | None]:
    """:func:`hand_designed` with the whole learning-rate search (rates tried, losses,
    whether the best is interior; a warning is logged if it is not), or None for a
    parameter-free learner."""
    from vsml_jax.learners import make_learner

    if name not in ("sgd", "adam"):
        return make_learner(name), None
    k_episodes, k_init = jax.random.split(key)
    xs, labels, _ = sample_eval_episodes(data, spec, num_episodes, k_episodes)
    make = lambda lr: online_optimizer(name, lr=lr, hidden=hidden)  # noqa: E731
    search = tune_lr(make, lrs, xs, labels, k_init, spec.num_classes, max_extensions)
    if not search.interior:
        log.warning(search.edge_note(name))
    return make(search.lr), search


def hand_designed(
    name: str,
    data: DeviceDataset,
    spec: EpisodeSpec,
    num_episodes: int,
    hidden: tuple[int, ...],
    lrs: tuple[float, ...],
    key: jax.Array,
) -> tuple[Learner, float | None]:
    """A hand-designed learner ready to evaluate: online 'sgd'/'adam' with the lr that
    has the lowest mean online loss on ``num_episodes`` episodes of ``data``
    (meta-training data, never the meta-test split), searched on ``lrs`` and beyond its
    edges (:func:`~vsml_jax.evaluation.tuning.tune_lr`), or a parameter-free learner such
    as 'ncm'. Returns ``(learner, lr or None)``."""
    learner, search = tuned_learner(name, data, spec, num_episodes, hidden, lrs, key)
    return learner, None if search is None else search.lr


def cached_hand_designed(
    name: str,
    cache,
    data: DeviceDataset,
    spec: EpisodeSpec,
    num_episodes: int,
    hidden: tuple[int, ...],
    lrs: tuple[float, ...],
    key: jax.Array,
) -> tuple[Learner, float | None]:
    """:func:`hand_designed`, with sgd/adam's tuned lr kept in the JSON file ``cache``
    (read when it exists, so a resumed experiment does not tune again)."""
    cache = Path(cache)
    if name in ("sgd", "adam") and cache.exists():
        lr = json.loads(cache.read_text())["lr"]
        return online_optimizer(name, lr=lr, hidden=hidden), lr
    learner, lr = hand_designed(name, data, spec, num_episodes, hidden, lrs, key)
    if lr is not None and jax.process_index() == 0:
        write_text(cache, json.dumps({"lr": lr}))
    return learner, lr


def cached_accuracy(path, learner, meta_params, data, spec, num, key) -> np.ndarray:
    """Accuracy ``[num, T]`` of :func:`evaluate`, read from the ``.npz`` file ``path`` when
    it exists, else computed and written there atomically."""
    path = Path(path)
    if path.exists():
        return load_npz(path)["accuracy"]
    acc = evaluate(learner, meta_params, data, spec, num, key).accuracy
    if jax.process_index() == 0:
        save_npz(path, accuracy=acc)
    return acc


class Entry(NamedTuple):
    """A learner to meta-test: its meta-parameters and, if it is not the shared one, the
    episode spec it reads (the preprocessing it was trained with; same key, same examples),
    or a function of the dataset returning that spec."""

    learner: Learner
    meta_params: PyTree = {}
    spec: EpisodeSpec | Callable[[DeviceDataset], EpisodeSpec] | None = None


def meta_test(
    learners: Mapping[str, Entry],
    datasets: Mapping[str, DeviceDataset],
    spec: EpisodeSpec,
    num_episodes: int,
    key: jax.Array,
    known: Mapping[tuple[str, str], np.ndarray] | None = None,
) -> tuple[list[dict], dict]:
    """Every learner on every dataset, all on the same ``num_episodes`` episodes per
    dataset (dataset ``i`` uses ``fold_in(key, i)``).

    Returns ``(rows, curves)``: one :func:`summarize` row per (dataset, learner) with
    ``dataset`` and ``learner`` keys, and ``curves[dataset][learner] = accuracy [N, T]``.
    Curves in ``known`` (keyed ``(dataset, learner)``) are reused, not recomputed.
    """
    rows, curves = [], {}
    for i, (name, data) in enumerate(datasets.items()):
        k = jax.random.fold_in(key, i)
        for label, entry in learners.items():
            acc = (known or {}).get((name, label))
            if acc is None:
                entry = Entry(*entry)
                own = entry.spec(data) if callable(entry.spec) else entry.spec
                acc = evaluate(
                    entry.learner, entry.meta_params, data, own or spec, num_episodes, k
                ).accuracy
            curves.setdefault(name, {})[label] = acc
            rows.append({"dataset": name, "learner": label, **summarize(acc)})
    return rows, curves


def tuned_baselines(
    names, data: DeviceDataset, spec: EpisodeSpec, ev, key, max_extensions: int = MAX_EXTENSIONS
) -> tuple[dict, dict[str, LrSearch]]:
    """Hand-designed learners ``names`` (see :func:`tuned_learner`; ``ev`` an
    ``EvalConfig``): ``({label: Entry}, {name: its lr search})``, the lr in the label."""
    entries, searches = {}, {}
    for name in names:
        learner, search = tuned_learner(
            name,
            data,
            spec,
            ev.num_episodes,
            ev.baseline_hidden,
            ev.baseline_lrs,
            key,
            max_extensions,
        )
        if search is not None:
            searches[name] = search
        entries[name if search is None else f"{name} (lr={search.lr:g})"] = Entry(learner)
    return entries, searches


class MetaTest:
    """A training run's periodic meta-test: its learner on the ``eval`` test splits, with
    the hand-designed ``eval.baselines`` on the same episodes.

    Baseline learning rates are tuned once on meta-*training* episodes; baseline curves
    do not depend on the meta-parameters, so they are computed once. The meta-learned
    learner's rows carry its :func:`paired_columns` against every baseline
    (``d_mean_vs_adam``, ...).
    """

    def __init__(self, datasets, spec, num_episodes, key, baselines, baseline_lrs):
        self.datasets, self.spec, self.num_episodes, self.key = datasets, spec, num_episodes, key
        self.baselines, self.baseline_lrs = baselines, baseline_lrs
        self._known: dict = {}

    @classmethod
    def from_config(cls, cfg, train_data: DeviceDataset, mesh) -> MetaTest:
        from vsml_jax.build import episode_spec, load_data, run_key

        ev = cfg.eval
        spec = episode_spec(cfg, ev.episode_length)
        datasets = {n: load_data(cfg, [n], ev.split, mesh) for n in ev.datasets}
        baselines, searches = tuned_baselines(
            ev.baselines, train_data, spec, ev, run_key(cfg.seed, "baseline_lr")
        )
        lrs = {name: s.lr for name, s in searches.items()}
        return cls(datasets, spec, ev.num_episodes, run_key(cfg.seed, "meta_test"), baselines, lrs)

    def __call__(self, learner: Learner, meta_params) -> tuple[list[dict], dict]:
        own = f"{learner.name} (meta-learned)"
        entries = {own: Entry(learner, meta_params), **self.baselines}
        rows, curves = meta_test(
            entries, self.datasets, self.spec, self.num_episodes, self.key, self._known
        )
        for name, by in curves.items():
            self._known.update({(name, label): by[label] for label in self.baselines})
        for row in rows:
            if row["learner"] == own:
                by = curves[row["dataset"]]
                refs = {label.split(" ")[0]: by[label] for label in self.baselines}
                row.update(paired_columns(by[own], refs))
        return rows, curves


def table_columns(rows: list[dict]) -> tuple[str, ...]:
    """A table's columns: the keys of its rows, in first-seen order. The function that
    builds a row is so the one place that says what a row holds (and in which order)."""
    return tuple(dict.fromkeys(k for r in rows for k in r))


def write_table(
    rows: list[dict],
    out_dir,
    notes: tuple[str, ...] = (),
    md_columns: tuple[str, ...] | None = None,
    stem: str = "results",
):
    """``<stem>.csv`` and ``<stem>.md`` (a Markdown table of ``md_columns``, by default
    every column, then ``notes`` lines) of summary ``rows`` under ``out_dir``; the columns
    are the rows' keys (:func:`table_columns`; a row without a key leaves its cell empty)."""
    import csv
    from pathlib import Path

    out_dir = Path(out_dir)
    columns = table_columns(rows)
    with (out_dir / f"{stem}.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    columns = columns if md_columns is None else md_columns
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    if notes:
        lines += ["", *notes]
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
