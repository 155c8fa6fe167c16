"""The public API: load_learner (run dir, checkpoint, shipped name), its model card, the
online session (predict/observe/run) and the one-line errors for wrong sources."""

import json
import runpy
import shutil
import sys

import jax
import numpy as np
import pytest
import yaml

import vsml_jax
from tests.tiny import PRESET, TINY_SUM
from vsml_jax.config import load_config
from vsml_jax.episode import run_episode
from vsml_jax.loading import restore_run
from vsml_jax.train import train

TINY = [*TINY_SUM, "es.generations=10"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return train(load_config(PRESET, [*TINY, f"out_dir={out}"]))


def _leaves_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_load_learner_from_a_run_dir_and_a_checkpoint(run_dir):
    trained = vsml_jax.load_learner(run_dir)
    _, _, latest, _ = restore_run(run_dir)
    _leaves_equal(trained.meta_params, latest)
    assert trained.task.input_dim == 8 and trained.task.num_classes == 2
    card = trained.card
    assert card["config"]["learner"] == "vsml" and card["code_version"]
    assert "command" in card and card["source"] == str(run_dir)
    at5 = vsml_jax.load_learner(run_dir / "checkpoints" / "5")
    _leaves_equal(at5.meta_params, restore_run(run_dir, 5)[2])
    diff = [
        float(np.abs(np.asarray(a) - np.asarray(b)).max())
        for a, b in zip(jax.tree.leaves(at5.meta_params), jax.tree.leaves(latest), strict=True)
    ]
    assert max(diff) > 0  # generation 5 is not generation 10


def test_load_learner_by_shipped_name():
    a = vsml_jax.load_learner("clone_backprop_es")
    b = vsml_jax.load_learner("pretrained:clone_backprop_es")
    _leaves_equal(a.meta_params, b.meta_params)
    assert a.card["command"] and a.card["check"]


def test_wrong_sources_are_one_clear_line(run_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no run directory, checkpoint or shipped learner"):
        vsml_jax.load_learner(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="is neither a run directory"):
        vsml_jax.load_learner(tmp_path)
    with pytest.raises(ValueError, match="holds learner 'vsml', not 'meta_rnn'"):
        vsml_jax.load_learner(run_dir, learner="meta_rnn")
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    cfg = yaml.safe_load((bad / "config.yaml").read_text())
    cfg["network"]["cell"]["hidden"] = 8
    (bad / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="do not fit learner 'vsml'.*does not match"):
        vsml_jax.load_learner(bad)


def _stream(n=60, d=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(2.0, 3.0, (n, d)).astype(np.float32), rng.integers(0, 2, n)


def test_session_run_equals_predict_observe_and_continues(run_dir):
    trained = vsml_jax.load_learner(run_dir)
    xs, ys = _stream()
    key = jax.random.PRNGKey(3)
    whole = trained.start(key, 12, 2, mean=2.0, std=3.0).run(xs, ys)
    assert whole.probs.shape == (60, 2) and whole.accuracy.shape == (60,)
    split = trained.start(key, 12, 2, mean=2.0, std=3.0)
    parts = [split.run(xs[:25], ys[:25]), split.run(xs[25:], ys[25:])]
    np.testing.assert_allclose(np.concatenate([p.probs for p in parts]), whole.probs, atol=1e-5)
    one = trained.start(key, 12, 2, mean=2.0, std=3.0)
    probs = []
    for x, y in zip(xs, ys, strict=True):
        probs.append(one.predict(x))
        one.observe(x, y)
    np.testing.assert_allclose(np.stack(probs), whole.probs, atol=1e-5)
    np.testing.assert_array_equal(whole.predictions, whole.probs.argmax(-1))


def test_session_preprocesses_as_in_training(run_dir):
    """Standardise, then the learner's own random projection to its input size: the
    session equals run_episode on the stream prepared that way by hand."""
    trained = vsml_jax.load_learner(run_dir)
    xs, ys = _stream(d=20)
    key = jax.random.PRNGKey(4)
    got = trained.start(key, 20, 2, mean=2.0, std=3.0).run(xs, ys)
    k_proj, k_init = jax.random.split(key)
    w = jax.random.normal(k_proj, (20, 8)) / np.sqrt(20.0)
    prepared = jax.numpy.dot((xs - 2.0) / 3.0, w, precision=jax.lax.Precision.HIGHEST)
    ref = run_episode(trained.learner, trained.meta_params, prepared, ys, k_init, 2)
    np.testing.assert_allclose(got.probs, jax.nn.softmax(ref.logits), atol=1e-5)
    np.testing.assert_array_equal(got.accuracy, ref.accuracy)


def test_session_bad_input_is_one_clear_line(run_dir):
    s = vsml_jax.load_learner(run_dir).start(jax.random.PRNGKey(0), 12, 2)
    with pytest.raises(ValueError, match="inputs have 5 values; this session reads 12"):
        s.predict(np.zeros(5))
    with pytest.raises(ValueError, match=r"labels must lie in 0..1"):
        s.run(np.zeros((3, 12)), [0, 1, 2])
    with pytest.raises(ValueError, match="3 inputs but 2 labels"):
        s.run(np.zeros((3, 12)), [0, 1])


def test_provenance_is_recorded(run_dir):
    record = json.loads((run_dir / "provenance.json").read_text())
    assert set(record) == {"command", "code_version"}


@pytest.mark.needs_data("fashion_mnist")
def test_the_readme_example_runs_as_written():
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    (code,) = re.findall(r"## Use a meta-learned learner\n\n```python\n(.*?)```", readme, re.S)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert 0.3 < float(out.stdout.strip().splitlines()[-1]) <= 1.0, out.stdout


def test_init_from_a_shipped_learner():
    """``init_from: pretrained:NAME`` starts a run from a shipped learner's meta-parameters
    (e.g. the Section 4.1 clone on another task), checked like a run directory's."""
    import dataclasses

    from vsml_jax import pretrained
    from vsml_jax.build import build_learner
    from vsml_jax.learners.base import TaskSpec
    from vsml_jax.loading import initial_meta_params

    shipped = pretrained.load("clone_backprop")
    cfg = dataclasses.replace(shipped.config, init_from="pretrained:clone_backprop")
    like = build_learner(cfg).meta_init(jax.random.PRNGKey(0), TaskSpec(784, 5))
    _leaves_equal(initial_meta_params(cfg, like), shipped.meta_params)
    other = dataclasses.replace(cfg, network=dataclasses.replace(cfg.network, share_layers=False))
    other = dataclasses.replace(
        other, network=dataclasses.replace(other.network, hidden_layers=(4,))
    )
    with pytest.raises(ValueError, match="do not fit this run's learner"):
        initial_meta_params(
            other, build_learner(other).meta_init(jax.random.PRNGKey(0), TaskSpec(784, 5))
        )


def test_an_iterate_average_of_a_run_is_a_run(run_dir, tmp_path, monkeypatch):
    """experiments/la_cloning/scripts/average.py: a run directory whose checkpoint holds the
    mean meta-parameters of the named checkpoints, loadable like any run."""
    out = tmp_path / "averaged"
    monkeypatch.setattr(sys, "argv", ["average", str(run_dir), str(out), "5", "10"])
    runpy.run_module("experiments.la_cloning.scripts.average", run_name="__main__")
    got = vsml_jax.load_learner(out)
    want = jax.tree.map(
        lambda a, b: (a + b) / 2, restore_run(run_dir, 5)[2], restore_run(run_dir, 10)[2]
    )
    for x, y in zip(jax.tree.leaves(got.meta_params), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    assert got.task.input_dim == 8 and sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "10"
    ]


def test_a_class_mean_memory_added_to_a_shipped_learner_is_a_run(tmp_path, monkeypatch):
    """experiments/la_cloning/scripts/class_means.py: a run directory whose V_M is the
    source's with add_class_means applied and whose network reads the label."""
    from vsml_jax import pretrained
    from vsml_jax.vsml.class_means import add_class_means

    out = tmp_path / "means"
    argv = ["class_means", "pretrained:clone_backprop_grad_mix", str(out), "--gamma", "30"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_module("experiments.la_cloning.scripts.class_means", run_name="__main__")
    src, got = pretrained.load("clone_backprop_grad_mix"), vsml_jax.load_learner(out)
    want = tuple(add_class_means(q, src.config.network.cell, 30.0) for q in src.meta_params)
    for x, y in zip(jax.tree.leaves(got.meta_params), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert got.config.network.feed_label and not src.config.network.feed_label
    assert got.task.input_dim == 784
