"""python -m experiments.simple_baselines on a tiny budget: one table row per dataset and
learner, printed and written to its run dir."""

import csv

import pytest

from experiments.simple_baselines import main as simple_baselines
from vsml_jax.config import RunConfig
from vsml_jax.runtime import rundir


@pytest.mark.slow
@pytest.mark.needs_data("mnist", "fashion_mnist")
def test_prints_a_row_per_dataset_and_learner(capsys, tmp_path):
    rc = simple_baselines.main(
        [
            "--learners",
            "ncm,knn,1nn",
            "--set",
            "eval.num_episodes=2",
            "--set",
            "eval.episode_length=30",
            "--set",
            "data.input_dim=8",
            "--set",
            f"out_dir={tmp_path}",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 2 * 3  # header, {mnist, fashion_mnist} x 3 learners
    assert rows[1].startswith("| mnist | ncm |") and rows[-1].startswith("| fashion_mnist | 1nn |")
    assert all(row.endswith("| 2 x 30 |") for row in rows[1:])
    (run,) = (tmp_path / "simple_baselines").iterdir()
    assert f"run dir: {run}" in out and f"done: {run} (results.csv, results.md)" in out
    md = [x for x in (run / "results.md").read_text().splitlines() if x.startswith("| ")]
    assert md == rows
    table = list(csv.DictReader((run / "results.csv").open()))
    assert [(r["dataset"], r["learner"]) for r in table] == [
        (d, n) for d in ("mnist", "fashion_mnist") for n in ("ncm", "knn", "1nn")
    ]
    assert all(r["episodes"] == "2" and r["steps"] == "30" for r in table)
    saved = rundir.saved_config(run, RunConfig)  # the preset, DEFAULTS, --set and --learners
    assert saved.name == "simple_baselines" and saved.eval.baselines == ("ncm", "knn", "1nn")
    assert (saved.eval.num_episodes, saved.eval.episode_length) == (2, 30)


def test_defaults_go_under_set_and_learners_over_it():
    from vsml_jax.runtime.cli import parser, resolve

    command = simple_baselines.COMMAND
    argv = ["--set", "eval.num_episodes=8", "--set", "eval.baselines=[sgd]", "--learners", "1nn"]
    cfg, _ = resolve(command, parser(command).parse_args(argv))
    assert (cfg.name, cfg.eval.episode_length, cfg.eval.num_episodes) == (
        "simple_baselines",
        2000,
        8,
    )
    assert cfg.eval.baselines == ("1nn",)
    cfg, _ = resolve(command, parser(command).parse_args([]))
    assert cfg.eval.baselines == ("sgd", "adam", "ncm", "knn", "1nn")


def test_unknown_learner_is_one_error_line(capsys, tmp_path):
    assert simple_baselines.main(["--learners", "vsml", "--set", f"out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not hand-designed" in err[0]
    assert list(tmp_path.iterdir()) == []
