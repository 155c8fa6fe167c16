"""Omniglot few-shot learning, online: meta-train on some characters, test on unseen ones.

Meta-training uses Omniglot's ``small1`` background subset (the ``omniglot`` ``train``
split: 136 characters); meta-testing uses the characters of ``small2`` (``test``) that
``small1`` does not contain (the two subsets share 50 characters, drawn by other people;
they are removed, so every meta-test character is unseen: 106 characters). Each LA is
meta-trained on N-way K-shot episodes of the base config (default 5-way 1-shot) with
:func:`vsml_jax.train.train` and meta-tested on every setting of ``settings`` (5-way 1-shot,
5-way 5-shot, 20-way 1-shot by default), all LAs on the same episodes (same images, labels
and order; a projected LA sees the same images through its random projection). An episode
is ``N * K`` support examples then ``eval_queries`` queries, labels shown after every
prediction; the score is the accuracy on the queries.

An LA whose meta-parameters fix the number of outputs (MAML's initial weights) cannot run a
setting with another ``N``; it is meta-trained again for that ``N`` (marked in the table).
VSML's shared cells run on any number of outputs with the same meta-parameters.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path

import jax
import numpy as np

from vsml_jax import plots
from vsml_jax.build import build_learner, place_data, run_key
from vsml_jax.config import HAND_DESIGNED, ConfigError, RunConfig
from vsml_jax.data import load_split
from vsml_jax.data.fewshot import FewShotSpec, query_accuracy
from vsml_jax.data.preprocess import filter_classes
from vsml_jax.evaluation import evaluate, write_table
from vsml_jax.learners import LEARNERS
from vsml_jax.learners.base import TaskSpec
from vsml_jax.runtime.devices import population_mesh
from vsml_jax.stages import (
    cached_curves,
    learner_name,
    stage_config,
    train_or_load,
    tuned_hand_designed,
)

log = logging.getLogger(__name__)

_SETTING = re.compile(r"^(\d+)w(\d+)s$")


def parse_setting(text: str) -> tuple[int, int]:
    """``'5w1s'`` -> ``(5, 1)``: N-way K-shot."""
    match = _SETTING.match(text)
    if not match:
        raise ConfigError(f"few-shot setting {text!r} must look like 5w1s (N-way K-shot)")
    return int(match[1]), int(match[2])


def setting_name(ways: int, shots: int) -> str:
    return f"{ways}-way {shots}-shot"


@dataclasses.dataclass(frozen=True)
class OmniglotConfig:
    """LAs, meta-test settings and the base run config (meta-training setting in
    ``base.data.ways`` / ``shots`` / ``queries``). An LA is a learner name, optionally with
    a tag (``vsml@conv``) whose ``la_overrides`` (``key=value`` over ``base``) define it."""

    name: str = "omniglot"
    out_dir: str = "runs"
    las: tuple[str, ...] = ("vsml", "vsml@conv", "maml", "ncm", "1nn", "sgd")
    la_overrides: dict = dataclasses.field(default_factory=dict)
    settings: tuple[str, ...] = ("5w1s", "5w5s", "20w1s")
    eval_queries: int = 1
    eval_episodes: int = 500
    base: RunConfig = RunConfig()  # the CPU default: configs/omniglot.yaml

    def __post_init__(self):
        for la in (*self.las, *self.la_overrides):
            if learner_name(la) not in LEARNERS:
                raise ConfigError(f"unknown LA {la!r}; known: {', '.join(sorted(LEARNERS))}")
            if "@" in la and la not in self.la_overrides:
                raise ConfigError(f"LA variant {la!r} needs its overrides in la_overrides")
        if not self.settings:
            raise ConfigError("settings must name at least one N-way K-shot setting")
        for text in self.settings:
            parse_setting(text)
        if self.base.data.ways is None:
            raise ConfigError("base.data.ways must be set: the meta-training episodes are N-way")
        if self.eval_queries < 1 or self.eval_episodes < 2:
            raise ConfigError("eval_queries must be >= 1 and eval_episodes >= 2")


def split_characters(train, test):
    """``test`` without the characters (labels) that ``train`` has, both relabelled
    ``0..k-1``; returns ``(train, test, shared)`` with the number of shared characters."""
    train_chars, test_chars = np.unique(train.labels), np.unique(test.labels)
    held_out = np.setdiff1d(test_chars, train_chars)
    if held_out.size < 2:
        raise ValueError(f"{test.name}/{test.split} has no characters unseen in meta-training")
    train, test_out = filter_classes(train, train_chars), filter_classes(test, held_out)
    return train, test_out, int(test_chars.size - held_out.size)


def _fixed_outputs(learner, input_dim: int, ways: int, trained_ways: int) -> bool:
    """Whether ``learner``'s meta-parameters depend on the number of outputs."""

    def shapes(n):
        task = TaskSpec(input_dim, n)
        tree = jax.eval_shape(lambda k: learner.meta_init(k, task), jax.random.PRNGKey(0))
        return [x.shape for x in jax.tree.leaves(tree)]

    return shapes(trained_ways) != shapes(ways)


def _ways_config(run_cfg: RunConfig, ways: int) -> RunConfig:
    data = dataclasses.replace(run_cfg.data, ways=ways, num_classes=ways)
    return dataclasses.replace(run_cfg, name=f"{run_cfg.name}-{ways}way", data=data)


def run(cfg: OmniglotConfig, run_dir: Path) -> list[dict]:
    """Meta-train every LA, meta-test it on every setting; write the table and figure.

    Finished work is cached under ``run_dir`` (``meta_train/*/summary.json``,
    ``meta_test/*.npz``), so calling ``run`` again on the same folder recomputes nothing.
    """
    base = cfg.base
    mesh = population_mesh()
    is_main = jax.process_index() == 0
    d = base.data
    if tuple(d.train_sets) != ("omniglot",):
        raise ConfigError(f"base.data.train_sets must be [omniglot], got {list(d.train_sets)}")
    train_arrays = load_split("omniglot", "train", data_dir=d.data_dir)
    test_arrays = load_split("omniglot", "test", data_dir=d.data_dir)
    _, test_arrays, shared = split_characters(train_arrays, test_arrays)
    log.info(
        "meta-test: %d characters of omniglot/test unseen in meta-training (%d shared removed)",
        test_arrays.num_classes,
        shared,
    )
    test_data = place_data(base, [test_arrays], mesh)
    settings = [parse_setting(s) for s in cfg.settings]
    trained = setting_name(d.ways, d.shots)
    rows = []
    for la in cfg.las:
        run_cfg = stage_config(base, la, ("omniglot",), cfg.la_overrides.get(la, ()))
        sub = run_dir / "meta_train" / run_cfg.name
        hand = learner_name(la) in HAND_DESIGNED
        learners = {}
        for i, (ways, shots) in enumerate(settings):
            rd = run_cfg.data
            spec = FewShotSpec(ways, shots, cfg.eval_queries, rd.input_dim, rd.projection_prob)
            spec.check_counts(test_arrays.labels)
            cache = run_dir / "meta_test" / f"{run_cfg.name}__{ways}w{shots}s.npz"

            def compute(
                i=i, ways=ways, spec=spec, run_cfg=run_cfg, sub=sub, hand=hand, learners=learners
            ):
                a = spec.input_dim or test_data.input_dim
                # a learner whose meta-parameters fit one output size is trained for this
                # setting's ways (and only for it); the others reuse the trained setting's
                fixed = not hand and _fixed_outputs(build_learner(run_cfg), a, ways, d.ways)
                if fixed:
                    wcfg = _ways_config(run_cfg, ways)
                    if ways not in learners:
                        learners[ways] = train_or_load(wcfg, run_dir / "meta_train" / wcfg.name)
                    learner, params = learners[ways]
                    note = setting_name(ways, d.shots) + " (fixed output size)"
                else:
                    if d.ways not in learners:
                        learners[d.ways] = (
                            (tuned_hand_designed(run_cfg, sub, mesh)[0], {})
                            if hand
                            else train_or_load(run_cfg, sub)
                        )
                    learner, params = learners[d.ways]
                    note = trained
                    if hand:
                        lr_file = sub / "lr.json"
                        note = (
                            f"lr {json.loads(lr_file.read_text())['lr']:g}"
                            if lr_file.exists()
                            else "-"
                        )
                key = jax.random.fold_in(run_key(base.seed, "meta_test"), i)
                acc = evaluate(learner, params, test_data, spec, cfg.eval_episodes, key).accuracy
                return {"accuracy": acc, "note": np.array(note)}

            saved = cached_curves(cache, compute)
            acc, note = saved["accuracy"], str(saved["note"])
            per_episode = query_accuracy(acc, spec)
            n = per_episode.size
            rows.append(
                {
                    "setting": setting_name(ways, shots),
                    "la": la,
                    "query_acc": float(per_episode.mean()),
                    "ci95": float(1.96 * per_episode.std(ddof=1) / np.sqrt(n)),
                    "chance": 1.0 / ways,
                    "episodes": n,
                    "queries": cfg.eval_queries,
                    "meta_trained_on": note,
                }
            )
            log.info("%s on %s: %.3f", la, rows[-1]["setting"], rows[-1]["query_acc"])
    if is_main:
        write_outputs(rows, run_dir, trained, test_arrays.num_classes)
    return rows


def write_outputs(rows: list[dict], run_dir: Path, trained: str, num_test_chars: int):
    notes = (
        f"query_acc: accuracy on the query examples of online N-way K-shot episodes of "
        f"{num_test_chars} Omniglot characters never seen in meta-training; ci95: 95% "
        "interval over episodes.",
    )
    write_table(rows, run_dir, notes)
    group = f"omniglot small1, {trained}; tested on unseen characters"
    grid = [{**r, "train_sets": group, "test_set": r["setting"], "seen": False} for r in rows]
    plots.plot_accuracy_grid(grid, Path(run_dir) / "figure.png", metric="query_acc")
