"""The cross-dataset benchmark end to end on a tiny budget, and its resume."""

import csv
from pathlib import Path

import numpy as np
import pytest

from experiments.cross_dataset.protocol import (
    CrossDatasetConfig,
    la_config,
    resolve_groups,
    write_outputs,
)
from vsml_jax.config import ConfigError, load_config
from vsml_jax.evaluation import paired_difference, summarize

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "experiments/cross_dataset/configs/cross_dataset.yaml"

TINY = [
    "--set",
    "base.data.episode_length=8",
    "--set",
    "base.data.input_dim=8",
    "--set",
    "base.es.population_pairs=2",
    "--set",
    "base.es.generations=4",
    "--set",
    "base.es.generations_per_call=2",
    "--set",
    "base.grad.steps=4",
    "--set",
    "base.grad.steps_per_call=2",
    "--set",
    "base.checkpoint_every=2",
    "--set",
    "base.eval.episode_length=20",
    "--set",
    "base.eval.num_episodes=3",
    "--set",
    "base.eval.baseline_lrs=[0.01,0.1]",
    "--set",
    "base.cpu_devices=1",
    "--set",
    "la_overrides={meta_rnn: ['learner_args={hidden: 8}'], "
    "maml@grad: [trainer=grad, 'grad.batch_size=2', 'learner_args={hidden: [8]}']}",
]


@pytest.mark.needs_data("mnist", "kmnist")
def test_groups_all_and_leave_one_out():
    cfg = load_config(
        PRESET,
        ["train_sets=[mnist, all, loo]", "test_sets=[mnist, kmnist, sum]"],
        cls=CrossDatasetConfig,
    )
    tests, groups = resolve_groups(cfg)
    assert tests == ["mnist", "kmnist", "sum"]  # kmnist: test split only
    assert groups == [("mnist",), ("mnist", "sum"), ("sum",)]
    rc = la_config(cfg, "meta_rnn", ("mnist", "sum"))
    assert rc.learner == "meta_rnn" and rc.data.train_sets == ("mnist", "sum")
    assert rc.learner_args == {"hidden": 32}


def test_simple_learners_are_in_every_default_comparison():
    from vsml_jax.config import HAND_DESIGNED

    paper = ROOT / "experiments/cross_dataset/configs/cross_dataset_paper.yaml"
    for las in (
        CrossDatasetConfig().las,
        load_config(PRESET, cls=CrossDatasetConfig).las,
        load_config(paper, cls=CrossDatasetConfig, defaults=PRESET).las,
    ):
        assert set(HAND_DESIGNED) <= set(las)
        assert len(set(las)) == len(las)
    rc = la_config(load_config(PRESET, cls=CrossDatasetConfig), "1nn", ("mnist",))
    assert rc.learner == "1nn" and rc.name == "1nn__mnist"


def test_bad_names_are_errors():
    with pytest.raises(ConfigError, match="unknown LA 'nope'"):
        load_config(PRESET, ["las=[vsml, nope]"], cls=CrossDatasetConfig)
    with pytest.raises(ConfigError, match="unknown test set"):
        load_config(PRESET, ["test_sets=[mnist, imagenet]"], cls=CrossDatasetConfig)
    cfg = load_config(PRESET, ["train_sets=[kmnist]"], cls=CrossDatasetConfig)
    with pytest.raises(ConfigError, match="no train split"):
        resolve_groups(cfg)
    cfg = load_config(PRESET, ["la_overrides={vsml: ['seed.x=1']}"], cls=CrossDatasetConfig)
    with pytest.raises(ConfigError, match="seed is not a section"):
        la_config(cfg, "vsml", ("mnist",))


def test_paired_table_against_every_hand_designed_la(tmp_path):
    rng = np.random.default_rng(0)
    curves = {
        "mnist": {
            t: {la: (rng.random((4, 30)) < p).astype(np.float32) for la, p in LAS.items()}
            for t in ("mnist", "sum")
        }
    }
    rows = [
        {"la": la, "train_sets": "mnist", "test_set": t, "seen": t == "mnist", **summarize(a)}
        for t, by in curves["mnist"].items()
        for la, a in by.items()
    ]
    write_outputs(rows, curves, tmp_path)
    paired = list(csv.DictReader((tmp_path / "paired.csv").open()))
    assert [(r["test_set"], r["reference"], r["la"]) for r in paired] == [
        (t, ref, la) for t in ("mnist", "sum") for ref in ("sgd", "ncm") for la in LAS if la != ref
    ]
    for r in paired:
        by = curves["mnist"][r["test_set"]]
        want = paired_difference(by[r["la"]], by[r["reference"]])
        assert float(r["d_mean"]) == pytest.approx(want["d_mean"])
        assert int(r["wins_last100"]) == want["wins_last100"]


LAS = {"vsml": 0.6, "sgd": 0.5, "ncm": 0.7}


@pytest.mark.slow
def test_cross_dataset_writes_table_and_figure_and_resumes(tmp_path, capsys):
    """In-process, on the synthetic tasks (meta-train on sum, test on sum and random)."""
    from experiments.cross_dataset.main import main

    argv = [
        "--las",
        "vsml,meta_rnn,maml@grad,sgd",
        "--train-sets",
        "sum",
        "--test-sets",
        "sum,random",
        "--set",
        f"out_dir={tmp_path}",
        *TINY,
    ]
    assert main(argv) == 0, capsys.readouterr().err
    run = next((tmp_path / "cross_dataset").iterdir())
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert len(rows) == 4 * 2
    for col in ("la", "train_sets", "test_set", "seen", "mean_acc", "last100_acc", "ci95"):
        assert col in rows[0]
    seen = {(r["la"], r["test_set"]): r["seen"] for r in rows}
    assert seen[("vsml", "sum")] == "True" and seen[("vsml", "random")] == "False"
    assert all(0.0 <= float(r["mean_acc"]) <= 1.0 for r in rows)
    assert (run / "results.md").read_text().count("\n") == 2 + 8
    assert (run / "figure.png").stat().st_size > 0
    paired = list(csv.DictReader((run / "paired.csv").open()))
    assert {(r["la"], r["reference"]) for r in paired} == {
        (la, "sgd") for la in ("vsml", "meta_rnn", "maml@grad")
    }
    assert (run / "meta_train" / "vsml__sum" / "summary.json").exists()
    grad_log = (run / "meta_train" / "maml-grad__sum" / "metrics.jsonl").read_text()
    assert '"grad_norm"' in grad_log  # meta-trained by backprop, not ES
    assert capsys.readouterr().out.rstrip().endswith("(results.csv, results.md, figure.png)")

    # a resumed run recomputes nothing: every LA's meta-test is cached
    before = {p: p.stat().st_mtime for p in (run / "meta_test").iterdir()}
    assert main([*argv, "--resume", str(run)]) == 0, capsys.readouterr().err
    assert {p: p.stat().st_mtime for p in (run / "meta_test").iterdir()} == before
    assert list(csv.DictReader((run / "results.csv").open())) == rows
    # ... and refuses another protocol on top of it (its rows would mix with these)
    assert main([*argv, "--resume", str(run), "--las", "ncm,1nn"]) == 2
    assert "las was " in capsys.readouterr().err
