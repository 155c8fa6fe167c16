"""python -m vsml_jax.evaluate: any learners on the same episodes, with its outputs."""

import csv

import jax
import numpy as np
import pytest

from vsml_jax.data import to_device
from vsml_jax.data.episodes import EpisodeSpec
from vsml_jax.data.synthetic import load_synthetic
from vsml_jax.evaluation import Entry, cli, evaluate, meta_test
from vsml_jax.learners import make_learner


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


def test_evaluate_cli_writes_table_and_curves(tmp_path, capsys):
    rc = cli.main(
        [
            "--learners", "pretrained:clone_backprop_es", "adam", "ncm",
            "--datasets", "sum", "random", "--tune-on", "sum",
            "--steps", "20", "--episodes", "2", "--lrs", "0.01", "0.1",
            "--out-dir", str(tmp_path),
        ]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    (out,) = (tmp_path / "evaluate").iterdir()
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["dataset"], r["learner"].split(" ")[0]) for r in rows] == [
        (d, n) for d in ("sum", "random") for n in ("pretrained:clone_backprop_es", "adam", "ncm")
    ]
    for name in ("results.md", "curves.png", "curves_logx.png", "args.json", "provenance.json"):
        assert (out / name).is_file(), name
    assert all(0 <= float(r["mean_acc"]) <= 1 and r["steps"] == "20" for r in rows)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--learners", "nope"], "no run directory, checkpoint or shipped learner 'nope'"),
        (["--learners", "ncm", "--datasets", "nope"], "nope"),
    ],
)
def test_evaluate_cli_bad_input_is_one_line(argv, message, capsys, tmp_path):
    assert cli.main([*argv, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
