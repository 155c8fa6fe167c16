"""The one entry shape (vsml_jax.runtime.cli.run_command), for every command: what a
start or a resume may not do to a run dir, and one line for each way a start can fail.

In-process and fast: nothing here trains; each case fails (or is stopped) before any
work, which is the point."""

import importlib
import os

import pytest

from vsml_jax.build import load_run_config
from vsml_jax.config import RunConfig
from vsml_jax.runtime import rundir

# command, its config class (module:name), a structural change of its config; an
# experiment is experiments.<command>, its config class in its protocol module
EXPERIMENTS = [
    ("es_mnist", None, "seed=5"),
    ("cross_dataset", "CrossDatasetConfig", "base.seed=5"),
    ("la_cloning", "LACloningConfig", "seed=7"),
    ("invariances", "InvariancesConfig", "seed=7"),
    ("omniglot", "OmniglotConfig", "base.eval.num_episodes=3"),
    ("introspection", "IntrospectionConfig", "num_streams=3"),
    ("simple_baselines", None, "seed=5"),
    ("evaluate", "vsml_jax.evaluation.cli:EvaluateConfig", "steps=5"),
]
IDS = [e[0] for e in EXPERIMENTS]
# the function a command's work starts with (what _stub replaces)
WORK = {
    "es_mnist": "vsml_jax.train.train_in",
    "simple_baselines": "vsml_jax.build.load_data",
    "evaluate": "vsml_jax.evaluation.cli.prepare",
}


def _experiment(name, cls_name):
    """``(main module, config class, command)``."""
    if name == "evaluate":
        main = importlib.import_module("vsml_jax.evaluation.cli")
    else:
        main = importlib.import_module(f"experiments.{name}.main")
    cls = RunConfig
    if cls_name:
        module, _, attr = cls_name.rpartition(":")
        cls = getattr(importlib.import_module(module or f"experiments.{name}.protocol"), attr)
    return main, cls


def _run_dir(tmp_path, name, cls_name):
    """A run dir as a first start leaves it: its config.yaml (and nothing done)."""
    main, cls = _experiment(name, cls_name)
    preset = getattr(main, "PRESET", None)
    overrides = [*getattr(main, "DEFAULTS", ()), f"out_dir={tmp_path}"]
    cfg = load_run_config(preset, overrides, cls=cls, defaults=preset)
    run = tmp_path / cfg.name / "20260101-000000-seed0"
    run.mkdir(parents=True)
    rundir.write_config(run, cfg)
    return main, run


def _err(capsys):
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("name,cls_name,change", EXPERIMENTS, ids=IDS)
def test_resume_refuses_a_structural_change_before_writing(
    name, cls_name, change, tmp_path, capsys
):
    main, run = _run_dir(tmp_path, name, cls_name)
    before = (run / "config.yaml").read_bytes()
    assert main.main(["--resume", str(run), "--set", change]) == 2
    err = _err(capsys)
    key = change.split("=")[0]
    assert len(err) == 1 and f"{key} was" in err[0] and "cannot change on resume" in err[0]
    assert (run / "config.yaml").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


@pytest.mark.parametrize("name,cls_name,change", EXPERIMENTS, ids=IDS)
def test_second_writer_is_refused(name, cls_name, change, tmp_path, capsys):
    main, run = _run_dir(tmp_path, name, cls_name)
    before = (run / "config.yaml").read_bytes()
    with rundir.RunLock(run):
        assert main.main(["--resume", str(run)]) == 2
    err = _err(capsys)
    assert len(err) == 1 and f"in use by process {os.getpid()}" in err[0]
    assert (run / "config.yaml").read_bytes() == before


@pytest.mark.parametrize("name,cls_name,change", EXPERIMENTS, ids=IDS)
def test_out_dir_that_is_a_file_is_one_line(name, cls_name, change, tmp_path, capsys):
    main, _ = _experiment(name, cls_name)
    (tmp_path / "file").write_text("")
    assert main.main(["--set", f"out_dir={tmp_path / 'file'}"]) == 2
    err = _err(capsys)
    assert len(err) == 1 and err[0].startswith("error: cannot create the run folder")


def _stub(monkeypatch, name, error):
    """Replace the command's work by one that fails at once with ``error``."""

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(WORK.get(name, f"experiments.{name}.protocol.run"), fail)


@pytest.mark.parametrize("name,cls_name,change", EXPERIMENTS, ids=IDS)
def test_failed_start_leaves_no_run_dir(name, cls_name, change, tmp_path, capsys, monkeypatch):
    main, _ = _experiment(name, cls_name)
    _stub(monkeypatch, name, ValueError("no such dataset"))
    assert main.main(["--set", f"out_dir={tmp_path}"]) == 2
    assert _err(capsys) == ["error: no such dataset"]
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []


@pytest.mark.parametrize("name,cls_name,change", EXPERIMENTS, ids=IDS)
def test_ctrl_c_is_one_line_and_exit_130(name, cls_name, change, tmp_path, capsys, monkeypatch):
    main, run = _run_dir(tmp_path, name, cls_name)
    (run / "stage_done.txt").write_text("finished work")  # what a killed run keeps
    _stub(monkeypatch, name, KeyboardInterrupt())
    assert main.main(["--resume", str(run)]) == 130
    assert _err(capsys) == [f"interrupted; finished work is kept: --resume {run}"]
    assert (run / "stage_done.txt").exists()


@pytest.mark.needs_data("mnist")
def test_cross_dataset_unknown_train_set_leaves_no_run_dir(tmp_path, capsys):
    from experiments.cross_dataset.main import main

    assert main(["--train-sets", "nosuch", "--set", f"out_dir={tmp_path}"]) == 2
    err = _err(capsys)
    assert len(err) == 1 and "unknown meta-training set 'nosuch'" in err[0]
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []
    with pytest.raises(FileNotFoundError, match="no run to resume"):
        rundir.latest_run_dir(tmp_path / "cross_dataset", with_checkpoint=False)
