"""python -m vsml_jax.evaluate: any learners on the same episodes, with its outputs."""

import csv
import json

import jax
import numpy as np
import pytest

from vsml_jax.config import HAND_DESIGNED, RunConfig
from vsml_jax.data import to_device
from vsml_jax.data.episodes import EpisodeSpec
from vsml_jax.data.synthetic import load_synthetic
from vsml_jax.episode import run_episode
from vsml_jax.evaluation import (
    Entry,
    MetaTest,
    cli,
    evaluate,
    meta_test,
    paired_difference,
    sample_eval_episodes,
)
from vsml_jax.learners import make_learner
from vsml_jax.learners.base import TaskSpec
from vsml_jax.loading import TrainedLearner
from vsml_jax.runtime import rundir


def test_meta_test_pairs_every_learner_on_the_same_episodes():
    data = {"sum": to_device([load_synthetic("sum", "test", num_examples=200)])}
    spec = EpisodeSpec(length=15, num_classes=2)
    key = jax.random.PRNGKey(0)
    entries = {"ncm": Entry(make_learner("ncm")), "1nn": Entry(make_learner("1nn"))}
    rows, curves = meta_test(entries, data, spec, 3, key)
    assert [(r["dataset"], r["learner"]) for r in rows] == [("sum", "ncm"), ("sum", "1nn")]
    direct = evaluate(make_learner("1nn"), {}, data["sum"], spec, 3, jax.random.fold_in(key, 0))
    np.testing.assert_array_equal(curves["sum"]["1nn"], direct.accuracy)
    known = {("sum", "ncm"): np.zeros((3, 15))}
    _, reused = meta_test(entries, data, spec, 3, key, known)
    assert not reused["sum"]["ncm"].any()  # reused, not recomputed


def test_training_meta_test_rows_carry_paired_differences():
    data = {"sum": to_device([load_synthetic("sum", "test", num_examples=200)])}
    spec = EpisodeSpec(length=15, num_classes=2)
    baselines = {"ncm": Entry(make_learner("ncm")), "1nn": Entry(make_learner("1nn"))}
    tester = MetaTest(data, spec, 3, jax.random.PRNGKey(0), baselines, {})
    rows, curves = tester(make_learner("knn"), {})
    own, by = rows[0], curves["sum"]
    assert own["learner"] == "knn (meta-learned)"
    for ref in ("ncm", "1nn"):
        want = paired_difference(by[own["learner"]], by[ref])
        assert {k: own[f"{k}_vs_{ref}"] for k in want} == want
    assert not any("_vs_" in k for r in rows[1:] for k in r)  # baselines: summaries only


def _by_hand(acc, ref, window):
    """The paired difference over one window, from the saved curves, without the library."""
    acc, ref = acc.astype(np.float64), ref.astype(np.float64)
    T = acc.shape[1]
    part = {"first100": slice(0, min(100, T)), "mean": slice(None), "last100": slice(-100, None)}
    d = acc[:, part[window]].mean(1) - ref[:, part[window]].mean(1)
    return d.mean(), 1.96 * d.std(ddof=1) / np.sqrt(len(d)), (d > 0).sum(), (d < 0).sum()


def test_evaluate_cli_writes_table_curves_and_paired_differences(tmp_path, capsys):
    rc = cli.main(
        [
            "--learners", "pretrained:clone_backprop_es", "adam", "ncm",
            "--datasets", "sum", "random", "--tune-on", "sum",
            "--steps", "150", "--episodes", "3", "--lrs", "0.01", "0.1",
            "--reference", "adam", "ncm", "--out-dir", str(tmp_path),
        ]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    (out,) = (tmp_path / "evaluate").iterdir()
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["dataset"], r["learner"].split(" ")[0]) for r in rows] == [
        (d, n) for d in ("sum", "random") for n in ("pretrained:clone_backprop_es", "adam", "ncm")
    ]
    files = ("results.md", "curves.png", "curves_logx.png", "config.yaml", "provenance.json")
    for name in files:
        assert (out / name).is_file(), name
    saved = rundir.saved_config(out, cli.EvaluateConfig)  # each flag set its key
    assert saved.learners == ("pretrained:clone_backprop_es", "adam", "ncm")
    assert (saved.steps, saved.episodes, saved.lrs, saved.tune_on) == (150, 3, (0.01, 0.1), "sum")
    assert saved.reference == ("adam", "ncm") and saved.out_dir == str(tmp_path)
    assert all(0 <= float(r["mean_acc"]) <= 1 and r["steps"] == "150" for r in rows)
    adam_rows = [r for r in rows if r["learner"].startswith("adam")]
    assert all(r["learner"] == f"adam (lr={float(r['lr']):g})" for r in adam_rows)
    assert all(r["lr_interior"] in ("True", "False") for r in adam_rows)
    assert all(r["lr"] == "" for r in rows if not r["learner"].startswith("adam"))
    search = json.loads((out / "lr_search.json").read_text())["adam"]
    assert search["lr"] == float(adam_rows[0]["lr"]) and {0.01, 0.1} <= set(search["lrs"])
    assert str(search["interior"]) == adam_rows[0]["lr_interior"]

    saved = np.load(out / "curves.npz")
    labels = list(saved["learners"])
    assert labels == [r["learner"] for r in rows[:3]]
    n_checked = 0
    for row in rows:
        acc = saved[row["dataset"]][labels.index(row["learner"])]
        assert acc.shape == (3, 150)
        assert float(row["mean_acc"]) == pytest.approx(acc.mean())
        for ref in ("adam", "ncm"):
            ref_label = next(x for x in labels if x.split(" ")[0] == ref)
            if ref_label == row["learner"]:
                assert row[f"d_mean_vs_{ref}"] == ""  # no difference to itself
                continue
            for window in ("first100", "mean", "last100"):
                mean, ci, wins, losses = _by_hand(
                    acc, saved[row["dataset"]][labels.index(ref_label)], window
                )
                assert float(row[f"d_{window}_vs_{ref}"]) == pytest.approx(mean, abs=1e-12)
                assert float(row[f"d_{window}_ci95_vs_{ref}"]) == pytest.approx(ci, abs=1e-12)
                assert int(row[f"wins_{window}_vs_{ref}"]) == wins
                assert int(row[f"losses_{window}_vs_{ref}"]) == losses
                n_checked += 1
    assert n_checked == 2 * 4 * 3  # 2 datasets, 4 (learner, reference) pairs, 3 windows
    md = (out / "results.md").read_text()
    assert "Paired difference to adam (lr=" in md and "Paired difference to ncm" in md


def test_paired_difference_rejects_unpaired_curves():
    with pytest.raises(ValueError, match="same"):
        paired_difference(np.zeros((3, 10)), np.zeros((4, 10)))


def _meta_rnn_with_ten_outputs() -> TrainedLearner:
    """A meta-learned learner whose output count is fixed (10) by its meta-parameters."""
    cfg = RunConfig(learner="meta_rnn", learner_args={"hidden": 8})
    learner, task = make_learner("meta_rnn", hidden=8), TaskSpec(input_dim=32, num_classes=10)
    params = learner.meta_init(jax.random.PRNGKey(1), task)
    return TrainedLearner(learner, params, cfg, task, {"name": "meta_rnn_10"})


def test_every_learner_predicts_among_the_tasks_classes(tmp_path):
    args = cli.EvaluateConfig(
        learners=("pretrained:clone_backprop_es", *HAND_DESIGNED),
        datasets=("random",),
        tune_on="random",
        classes=(0, 1, 2),
        steps=30,
        episodes=2,
        lrs=(0.1,),
        lr_extensions=0,
        out_dir=str(tmp_path),
    )
    prep = cli.prepare(args)
    assert prep.spec.num_classes == 3
    rnn = _meta_rnn_with_ten_outputs()
    entries = {**prep.entries, "meta_rnn": cli.trained_entry(rnn, prep.spec)}
    data = prep.datasets["random"]
    for label, e in entries.items():
        spec = e.spec(data) if callable(e.spec) else e.spec or prep.spec
        assert spec.num_classes == 3, label
        xs, ys, keys = sample_eval_episodes(data, spec, 2, jax.random.PRNGKey(0))
        logits = jax.jit(
            jax.vmap(lambda x, y, k, e=e: run_episode(e.learner, e.meta_params, x, y, k, 3).logits)
        )(xs, ys, keys)
        assert logits.shape == (2, 30, 3), label
        assert set(np.unique(np.asarray(logits).argmax(-1))) <= {0, 1, 2}, label
    # an online session of a fixed-output learner also predicts among the stream's classes
    xs = np.random.default_rng(0).normal(size=(20, 784)).astype(np.float32)
    ys = np.arange(20) % 3
    out = rnn.start(jax.random.PRNGKey(2), input_dim=784, num_classes=3).run(xs, ys)
    assert out.probs.shape == (20, 3) and set(out.predictions) <= {0, 1, 2}


@pytest.mark.parametrize(
    "argv,messages",
    [
        (
            ["--learners", "nope"],
            ["--learners nope", "sgd, adam, ncm, knn, 1nn", "pretrained:clone_backprop_es"],
        ),
        (["--learners", "ncm", "--datasets", "nope"], ["nope"]),
        (["--learners", "ncm", "--steps", "0"], ["--steps must be >= 1, got 0"]),
        (["--learners", "ncm", "--episodes", "0"], ["--episodes must be >= 1"]),
        (["--learners", "ncm", "--reference", "adam"], ["--reference adam", "--learners"]),
        (["--learners", "ncm", "--classes", "3"], ["--classes"]),
        (["--learners", "adam", "--lrs", "0"], ["--lrs"]),
        (["--datasets", "sum"], ["--learners LEARNER"]),
        (["--learners", "ncm", "--set", "episodes=0"], ["--episodes must be >= 1"]),
        (["--learners", "ncm", "--set", "epsiodes=3"], ["unknown config key epsiodes"]),
    ],
)
def test_evaluate_cli_bad_input_is_one_line_naming_the_flag(argv, messages, capsys, tmp_path):
    assert cli.main([*argv, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert all(m in err for m in messages), err
    assert "data." not in err and "eval." not in err  # config keys the user never typed
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []  # no run dir is left


def test_evaluate_flags_and_set_are_the_same_config_keys():
    from vsml_jax.runtime.cli import parser, resolve

    command = cli.command()

    argv = ["--learners", "ncm", "1nn", "--image-size", "14", "14", "--grey", "--lrs", "1e-5"]
    argv += ["--set", "episodes=4", "--set", "steps=7", "--steps", "9", "--data-dir", "/d"]
    cfg, run_dir = resolve(command, parser(command).parse_args(argv))
    assert run_dir is None and cfg.learners == ("ncm", "1nn") and cfg.image_size == (14, 14)
    assert cfg.grey and not cfg.permute_pixels and cfg.lrs == (1e-5,)
    assert (cfg.episodes, cfg.steps, cfg.data_dir) == (4, 9, "/d")  # a flag wins over --set
    assert cfg.datasets == cli.EvaluateConfig.datasets  # a flag not given keeps its default


def test_table_columns_come_from_the_rows(tmp_path):
    """write_table: the columns are the rows' keys in first-seen order; a row without a
    key leaves its cell empty (None too); the Markdown table may show fewer columns."""
    from vsml_jax.evaluation import table_columns, write_table

    rows = [{"b": 1, "a": 0.5}, {"b": 2, "c": None}, {"a": 0.25, "c": "x", "b": 3}]
    assert table_columns(rows) == ("b", "a", "c")
    write_table(rows, tmp_path, ("a note",), md_columns=("b", "a"))
    assert (tmp_path / "results.csv").read_text().splitlines() == [
        "b,a,c",
        "1,0.5,",
        "2,,",
        "3,0.25,x",
    ]
    md = (tmp_path / "results.md").read_text().splitlines()
    assert md[0] == "| b | a |" and md[2] == "| 1 | 0.500 |" and md[-1] == "a note"
