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
    assert rc.learner_args == {"hidden": 32, "prev_input": True}


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
    preset = load_config(PRESET, cls=CrossDatasetConfig)
    assert {"vsml", "meta_rnn", "hebbian", "fw_memory", "fwp"} <= set(preset.las)
    rc = la_config(preset, "1nn", ("mnist",))
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
        "vsml,maml@grad,sgd",
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
    assert len(rows) == 3 * 2
    for col in ("la", "train_sets", "test_set", "seen", "mean_acc", "last100_acc", "ci95"):
        assert col in rows[0]
    seen = {(r["la"], r["test_set"]): r["seen"] for r in rows}
    assert seen[("vsml", "sum")] == "True" and seen[("vsml", "random")] == "False"
    assert all(0.0 <= float(r["mean_acc"]) <= 1.0 for r in rows)
    table, notes = (run / "results.md").read_text().split("\n\n", 1)
    assert table.count("\n") == 1 + 6 and "| gap_first100 |" in notes
    assert {r["vs_adam_first100"] for r in rows} == {""}  # adam not in this run
    acc = {(r["la"], r["test_set"]): float(r["mean_acc"]) for r in rows}
    vsml = next(r for r in rows if r["la"] == "vsml")
    assert float(vsml["gap_mean"]) == pytest.approx(acc["vsml", "sum"] - acc["vsml", "random"])
    assert (run / "meta_loss.png").stat().st_size > 0
    assert (run / "figure.png").stat().st_size > 0
    paired = list(csv.DictReader((run / "paired.csv").open()))
    assert {(r["la"], r["reference"]) for r in paired} == {
        (la, "sgd") for la in ("vsml", "maml@grad")
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


def test_gap_and_paired_difference_to_adam():
    from experiments.cross_dataset.protocol import add_comparisons, gap_notes
    from vsml_jax.evaluation import summarize

    rng = np.random.default_rng(0)
    n, t = 6, 150
    base = rng.uniform(0.2, 0.4, (n, 1))  # per-episode difficulty, shared by both LAs
    acc = {
        ("mnist", "la"): np.full((n, t), 0.8),
        ("kmnist", "la"): np.full((n, t), 0.5),
        ("sum", "la"): np.full((n, t), 0.3),
        ("mnist", "adam"): np.broadcast_to(base, (n, t)).copy(),
        ("kmnist", "adam"): np.full((n, t), 0.5),
        ("sum", "adam"): np.full((n, t), 0.5),
    }
    acc[("mnist", "la")][:, :100] = base + 0.1  # steps 1-100: adam + 0.1 on every episode
    rows, curves = [], {}
    for (test, la), a in acc.items():
        rows.append(
            {"la": la, "train_sets": "mnist", "test_set": test, "seen": test == "mnist"}
            | summarize(a)
        )
        curves.setdefault("mnist", {}).setdefault(test, {})[la] = a
    add_comparisons(rows, curves)
    row = {(r["la"], r["test_set"]): r for r in rows}
    r = row[("la", "mnist")]
    assert r["vs_adam_first100"] == pytest.approx(0.1)
    assert r["vs_adam_first100_ci95"] == pytest.approx(0.0, abs=1e-9)  # paired: no spread
    seen_mean = r["mean_acc"]
    assert r["gap_mean"] == pytest.approx(seen_mean - (0.5 + 0.3) / 2)
    assert r["gap_first100"] == pytest.approx(base.mean() + 0.1 - 0.4)
    assert row[("la", "sum")]["gap_mean"] == r["gap_mean"]  # one gap per LA and group
    assert row[("adam", "mnist")]["vs_adam_first100"] is None
    notes = "\n".join(gap_notes(rows))
    assert "| la | mnist |" in notes and "| adam | mnist |" in notes
