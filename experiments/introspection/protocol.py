"""Introspection (the paper's §5, Fig. 9): what a meta-learned VSML does within a stream.

A meta-learned VSML and hand-designed online learners (tuned SGD and Adam, the nearest
class mean) run side by side on the same short streams of a few classes. For one
stream the per-step predicted probability of every class is drawn as a heat map with the
true label marked, one panel per learner. Over many streams two numbers quantify
"fast association":

* the accuracy (and the probability of the correct class) at the k-th occurrence of each
  class in the stream, k = 1, 2, ... (``by_occurrence``);
* the probability of the correct class at the *next* occurrence of a class after the
  first error on it (``fast_association``): one labelled example after a mistake, how
  much has the learner associated the input with its class?

Streams and learner initialisations come from one key, so all learners see the same
streams (``evaluation.evaluate``'s pairing); ``p(correct) = exp(-online loss)``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import jax
import numpy as np

from vsml_jax import plots
from vsml_jax.build import load_data, run_key
from vsml_jax.config import ConfigError
from vsml_jax.data.episodes import EpisodeSpec
from vsml_jax.episode import run_episode
from vsml_jax.evaluation import evaluate, hand_designed, sample_eval_episodes, write_table
from vsml_jax.loading import load_learner
from vsml_jax.runtime.devices import population_mesh

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class IntrospectionConfig:
    """Which meta-learned learner, which streams, which baselines."""

    name: str = "introspection"
    out_dir: str = "runs"
    seed: int = 0
    cpu_devices: int = 0
    # a shipped learner (vsml_jax.pretrained.available()) or a training run directory
    learner: str = "invariances"
    dataset: str = "mnist"
    split: str = "test"
    tune_split: str = "train"  # the baselines' learning rates are tuned on this split
    data_dir: str | None = None
    stream_length: int = 50
    class_counts: tuple[int, ...] = (3, 4, 5)  # classes per stream (random, relabelled)
    num_streams: int = 64
    max_occurrence: int = 8  # report the accuracy at occurrences 1..max_occurrence
    baselines: tuple[str, ...] = ("sgd", "adam", "ncm")
    baseline_hidden: tuple[int, ...] = (160,)
    baseline_lrs: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
    tune_streams: int = 32

    def __post_init__(self):
        for key in ("stream_length", "num_streams", "max_occurrence", "tune_streams"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.num_streams < 2:
            raise ConfigError("num_streams must be >= 2 (intervals need two streams)")
        if not self.class_counts or min(self.class_counts) < 2:
            raise ConfigError(f"class_counts must be >= 2, got {self.class_counts}")


# --------------------------------------------------------------------------- metrics


def occurrence_index(labels: np.ndarray) -> np.ndarray:
    """``[N, T]``: how often ``labels[n, t]`` occurred in stream ``n`` before step ``t``
    (0 at a class's first occurrence)."""
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.int64)
    for n, row in enumerate(labels):
        seen: dict[int, int] = {}
        for t, y in enumerate(row.tolist()):
            out[n, t] = seen.get(y, 0)
            seen[y] = out[n, t] + 1
    return out


def _mean_ci(per_stream: np.ndarray) -> tuple[float, float, int]:
    """Mean over streams, its 95% normal interval half-width, and the streams counted
    (NaN entries, streams without a value, are left out)."""
    v = per_stream[np.isfinite(per_stream)]
    if v.size == 0:
        return float("nan"), float("nan"), 0
    ci = 1.96 * v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else float("nan")
    return float(v.mean()), float(ci), int(v.size)


def by_occurrence(values: np.ndarray, labels: np.ndarray, max_k: int) -> list[tuple]:
    """For k = 1..max_k, ``(mean, ci95, streams)`` over streams of the per-stream mean of
    ``values [N, T]`` (accuracy or p(correct)) at the k-th occurrence of each class."""
    occ = occurrence_index(labels)
    values = np.asarray(values, np.float64)
    out = []
    for k in range(1, max_k + 1):
        mask = occ == k - 1
        with np.errstate(invalid="ignore"):
            per_stream = np.where(mask, values, 0).sum(1) / mask.sum(1)
        out.append(_mean_ci(per_stream))
    return out


def fast_association(p_correct: np.ndarray, acc: np.ndarray, labels: np.ndarray) -> dict:
    """After the first error on a class, the next occurrence of that class: the mean
    probability of the correct class there (``p_next``) and the accuracy (``acc_next``),
    averaged per stream over its classes, then over streams (with 95% intervals)."""
    p_correct, acc, labels = (np.asarray(a) for a in (p_correct, acc, labels))
    p_streams, a_streams = [], []
    for p_row, a_row, y_row in zip(p_correct, acc, labels, strict=True):
        ps, accs = [], []
        for c in np.unique(y_row):
            times = np.nonzero(y_row == c)[0]
            errors = np.nonzero(a_row[times] == 0)[0]
            if errors.size and errors[0] + 1 < times.size:
                nxt = times[errors[0] + 1]
                ps.append(p_row[nxt])
                accs.append(a_row[nxt])
        p_streams.append(np.mean(ps) if ps else np.nan)
        a_streams.append(np.mean(accs) if accs else np.nan)
    p, p_ci, n = _mean_ci(np.asarray(p_streams, np.float64))
    a, a_ci, _ = _mean_ci(np.asarray(a_streams, np.float64))
    return {"p_next": p, "p_next_ci95": p_ci, "acc_next": a, "acc_next_ci95": a_ci, "streams": n}


# --------------------------------------------------------------------------- the experiment


def stream_spec(cfg: IntrospectionConfig, run_cfg) -> EpisodeSpec:
    """Streams in the learner's input format: its image size, and a projection only when
    its input size is smaller than the pixels'."""
    d = run_cfg.data
    return EpisodeSpec(
        length=cfg.stream_length,
        input_dim=d.input_dim,
        num_classes=d.num_classes,
        projection_prob=0.0 if d.input_dim is None else 1.0,
        class_subset_sizes=tuple(cfg.class_counts),
    )


def run(cfg: IntrospectionConfig, run_dir: Path) -> list[dict]:
    mesh = population_mesh()
    trained = load_learner(cfg.learner)
    run_cfg, learner, meta_params = trained.config, trained.learner, trained.meta_params
    source = trained.card.get("source")  # a run dir; else a shipped learner:
    source = source or f"pretrained {cfg.learner}: {trained.card['command']}"
    run_cfg = dataclasses.replace(
        run_cfg, data=dataclasses.replace(run_cfg.data, data_dir=cfg.data_dir)
    )
    spec = stream_spec(cfg, run_cfg)
    data = load_data(run_cfg, [cfg.dataset], cfg.split, mesh)
    tune = load_data(run_cfg, [cfg.dataset], cfg.tune_split, mesh)
    learners = {"VSML (meta-learned)": (learner, meta_params, None)}
    for name in cfg.baselines:
        b, lr = hand_designed(
            name,
            tune,
            spec,
            cfg.tune_streams,
            cfg.baseline_hidden,
            cfg.baseline_lrs,
            run_key(cfg.seed, "baseline_lr"),
        )
        learners[name] = (b, {}, lr)
    key = run_key(cfg.seed, "streams")
    _, labels, _ = sample_eval_episodes(data, spec, cfg.num_streams, key)
    labels = np.asarray(labels)
    rows, occurrence = [], {}
    for label, (lrn, mp, lr) in learners.items():
        curves = evaluate(lrn, mp, data, spec, cfg.num_streams, key)
        p_correct = np.exp(-curves.loss)
        occ_acc = by_occurrence(curves.accuracy, labels, cfg.max_occurrence)
        occ_p = by_occurrence(p_correct, labels, cfg.max_occurrence)
        occurrence[label] = occ_acc
        row = {"learner": label, "lr": lr, **fast_association(p_correct, curves.accuracy, labels)}
        row["mean_acc"] = float(curves.accuracy.mean())
        row.update({f"acc_occ{k}": a for k, (a, _, _) in enumerate(occ_acc, 1)})
        row.update({f"p_occ{k}": p for k, (p, _, _) in enumerate(occ_p, 1)})
        rows.append(row)
    notes = (
        f"VSML: {source}.",
        f"{cfg.num_streams} {cfg.dataset}/{cfg.split} streams of {cfg.stream_length} steps, "
        f"each of {'/'.join(map(str, cfg.class_counts))} random classes (relabelled); "
        f"sgd/adam lr tuned on {cfg.tune_streams} {cfg.tune_split} streams.",
        "p_next / acc_next: p(correct class) and accuracy at the next occurrence of a class "
        "after the first error on it (per-stream means, 95% CI over streams); acc_occK: "
        "accuracy at the K-th occurrence of a class.",
    )
    write_table(rows, run_dir, notes)
    (run_dir / "occurrence.json").write_text(json.dumps(occurrence, indent=1))
    plot_occurrence(occurrence, run_dir / "occurrence.png")
    heatmaps(cfg, learners, data, spec, key, run_dir / "heatmap.png")
    return rows


def heatmaps(cfg, learners: dict, data, spec, key, path: Path, stream: int = 0):
    """Fig. 9: per step, the predicted probability of every class for one stream, with the
    true label marked (:func:`vsml_jax.plots.plot_class_probabilities`)."""
    xs, labels, init_keys = sample_eval_episodes(data, spec, stream + 1, key)
    x, y, k = xs[stream], labels[stream], init_keys[stream]
    c = spec.num_classes
    shown = int(np.asarray(y).max()) + 1  # the classes of this stream (labels 0..k-1)
    panels = {}
    for label, (lrn, mp, lr) in learners.items():
        logits = jax.jit(lambda mp, lrn=lrn: run_episode(lrn, mp, x, y, k, c).logits)(mp)
        title = label if lr is None else f"{label} (lr={lr:g})"
        panels[f"{title}: classes 0-{shown - 1} of {c} outputs"] = np.asarray(
            jax.nn.softmax(logits)
        )
    plots.plot_class_probabilities(panels, np.asarray(y), path, shown)


def plot_occurrence(occurrence: dict, path: Path):
    """The accuracy (95% CI) at the k-th occurrence of a class, per learner."""
    series = {
        label: (np.arange(1, len(rows) + 1), [r[0] for r in rows], [r[1] for r in rows])
        for label, rows in occurrence.items()
    }
    plots.plot_errorbar_curves(
        series, path, xlabel="k-th occurrence of a class in the stream", ylabel="online accuracy"
    )
