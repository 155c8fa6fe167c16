"""``python -m vsml_jax.data``: list and prepare."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from vsml_jax.data import prepare as prepare_lib
from vsml_jax.data.__main__ import main
from vsml_jax.data.dirs import repo_root


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="TF installed")
def test_prepare_without_tensorflow_is_one_clear_line(tmp_path):
    cmd = [sys.executable, "-m", "vsml_jax.data", "prepare", "emnist", "--data-dir", str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=repo_root(), timeout=120)
    assert result.returncode == 1
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "TensorFlow" in err[0] and "pip install -e '.[tf]'" in err[0]
    assert not any(tmp_path.iterdir())


def test_prepare_checks_tensorflow(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(prepare_lib.importlib.util, "find_spec", lambda name: None)
    assert main(["prepare", "mnist", "--data-dir", str(tmp_path)]) == 1
    assert "pip install -e '.[tf]'" in capsys.readouterr().err


def test_prepare_refuses_shared_folder(capsys):
    shared = repo_root().parent / "shared" / "datasets" / "tfds"
    assert main(["prepare", "mnist", "--data-dir", str(shared)]) == 1
    assert "read-only shared folder" in capsys.readouterr().err


@pytest.mark.needs_data("kmnist", "cifar10")
def test_list_shows_sources_and_missing(capsys):
    assert main(["list"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines["kmnist"].startswith("kmnist_testonly:3.0.1 in ")
    assert lines["cifar10"].startswith("cifar10_jpeg75:1.0.0 in ")
    assert lines["emnist"] == "missing" and lines["sum"].startswith("synthetic")
    assert "(searched)" in lines
