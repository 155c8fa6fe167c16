"""End to end, in-process: `python -m experiments.la_cloning` on real MNIST, tiny; resume
recomputes nothing."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from experiments.la_cloning import protocol
from experiments.la_cloning.main import main
from vsml_jax.config import from_dict
from vsml_jax.loading import load_meta_params, restore_run
from vsml_jax.runtime.metrics import read_metrics

TINY = [
    "clone.train_steps=40",
    "clone_block=20",
    "clone.grids=2",
    "clone.grid=[6,4]",
    "clone.steps=5",
    "deep_hidden=[4]",
    "base.cpu_devices=1",
    "base.data.input_dim=8",
    "base.data.projection_prob=1.0",  # 784 pixels projected to 8
    "base.data.episode_length=10",
    "improve.image_size=null",
    "improve.projection_prob=1.0",  # 784 pixels projected to 8, as the meta-test's
    "improve.episode_length=10",
    "improve.early_steps=3",
    "improve.es.population_pairs=2",
    "improve.es.generations=4",
    "improve.es.generations_per_call=2",
    "improve.grad.steps=4",
    "improve.grad.steps_per_call=2",
    "improve.grad.batch_size=2",
    "base.eval.num_episodes=3",
    "base.eval.episode_length=40",
    "base.eval.baseline_lrs=[0.01,0.1]",
    "clone_baselines=[adam,ncm]",
    "impl=fast",  # the same on every CPU (auto is the fused kernel where it runs)
    "long_steps=40",  # the meta-test's episodes' shape: its compiled programs serve again
    "long_episodes=3",
    "improve.trainers=[grad,es]",
    "test_sets=[mnist]",
]


def _run(capsys, out_dir, *args):
    """``python -m experiments.la_cloning`` in-process: ``(rc, stdout, stderr)``."""
    sets = [a for s in TINY for a in ("--set", s)]
    rc = main([*sets, "--set", f"out_dir={out_dir}", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.slow
@pytest.mark.needs_data("mnist")
def test_la_cloning_writes_its_outputs_and_resume_recomputes_nothing(tmp_path, capsys):
    rc, out, err = _run(capsys, tmp_path)
    assert rc == 0, err
    run = Path(next(x for x in out.splitlines() if x.startswith("run dir: "))[9:])
    for f in ("weights.png", "fig5.png", "improve.png", "results.md", "windows/results.md"):
        assert (run / f).stat().st_size > 0, f
    rows = (run / "results.csv").read_text().splitlines()
    # 1 test set x 2 networks x 4 learners, the long shallow episodes (clone, SGD), then
    # the clone improved by meta-gradients and by ES
    assert len(rows) == 1 + 8 + 2 + 2
    # paired clone - SGD windows of 250 steps (one per 40-step episode) and of 1000 (long)
    assert len((run / "windows" / "results.csv").read_text().splitlines()) == 1 + 2 + 1
    assert any("VSML clone + ES" in r for r in rows)
    assert any("VSML clone + meta-gradients" in r for r in rows)
    # each improved learner minus the clone, tuned Adam and NCM (1-NN is not in this run)
    paired = (run / "improve" / "results.csv").read_text().splitlines()
    assert len(paired) == 1 + 2 * 3 and "d_first100_ci95" in paired[0]
    clone_flat = ravel_pytree(load_meta_params(run / "clone")[2])[0]
    for trainer, steps in (("grad", 4), ("es", 4)):
        meta = run / "meta_train" / f"clone_{trainer}"
        run_cfg, _, params = load_meta_params(meta)
        assert run_cfg.init_from == str(run / "clone") and run_cfg.data.early_steps == 3
        assert [r["generation"] for r in read_metrics(meta)][-1] == steps
        assert not np.array_equal(ravel_pytree(params)[0], clone_flat), trainer
    clone = run / "clone"
    assert (clone / "config.yaml").exists() and (clone / "task.json").exists()
    cached = {f: f.stat().st_mtime_ns for f in (run / "meta_test").glob("*.npz")}
    acc = np.load(next(iter(cached)))["accuracy"]
    assert acc.shape == (3, 40)
    clone_files = {f: f.stat().st_mtime_ns for f in clone.rglob("*") if f.is_file()}

    rc, out, err = _run(capsys, tmp_path, "--resume", str(run))
    assert rc == 0, err
    assert {f: f.stat().st_mtime_ns for f in (run / "meta_test").glob("*.npz")} == cached
    # the clone is not rebuilt
    assert {f: f.stat().st_mtime_ns for f in clone.rglob("*") if f.is_file()} == clone_files


def test_unknown_key_is_one_line_error(tmp_path, capsys):
    rc, _, err = _run(capsys, tmp_path, "--set", "clone.stepz=3")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1
    assert lines[0].startswith("error: unknown config key clone.stepz")


def test_trained_clone_is_a_run_of_the_one_loop_that_loads_and_resumes(tmp_path, capsys):
    """``clone_method=train``: the cloning trainer runs in vsml_jax.train.train, which
    writes a VSML run dir (its read-out in the trainer state); a killed run resumes from
    its last checkpoint to the same clone."""
    tree = {
        "clone_method": "train",
        "clone_block": 2,
        "clone": {"train_steps": 4, "grids": 2, "grid": [6, 4], "steps": 3},
        "base": {"cpu_devices": 1, "data": {"input_dim": 8}},
    }
    cfg = from_dict(protocol.LACloningConfig, tree)
    assert protocol.clone_run_config(cfg).schedule == (4, 2, "grad.step")
    run = tmp_path / "clone"
    cell, readout = protocol.train_clone(cfg, run)
    rows = read_metrics(run)
    assert [r["generation"] for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(r["meta_loss"]) and r["skipped"] == 0 for r in rows)
    assert readout.shape == (2, cfg.cell.hidden)
    # a VSML learner's run dir: its meta-parameters are the clone's cell
    run_cfg, learner, meta_params = load_meta_params(run)
    assert learner.name == "vsml" and run_cfg.trainer == "grad"
    flat = ravel_pytree(cell)[0]
    np.testing.assert_array_equal(ravel_pytree(meta_params)[0], flat)
    raw = restore_run(run)[3]
    np.testing.assert_array_equal(raw["state"]["params"]["readout"], readout)
    steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [2, 4]

    # killed after step 2: it goes on from there to the same clone
    shutil.rmtree(run / "checkpoints" / "4")
    (run / "summary.json").unlink()
    capsys.readouterr()
    cell2, readout2 = protocol.train_clone(cfg, run)
    assert "resumed from step 2" in capsys.readouterr().out
    np.testing.assert_array_equal(ravel_pytree(cell2)[0], flat)
    np.testing.assert_array_equal(readout2, readout)
    assert [r["generation"] for r in read_metrics(run)] == [1, 2, 3, 4]


@pytest.mark.parametrize("preset", ["la_cloning.yaml", "la_cloning_paper.yaml"])
def test_presets_feed_the_standardised_pixels_themselves(preset):
    """The paper's format: every learner reads the 784 standardised pixels, not a random
    784 x 784 projection of them (``data.projection_prob`` defaults to 1)."""
    import jax

    from vsml_jax.build import episode_spec
    from vsml_jax.config import load_config
    from vsml_jax.data import DatasetArrays, to_device
    from vsml_jax.data.episodes import sample_episode_full

    path = Path(protocol.__file__).parent / "configs" / preset
    base = load_config(path, cls=protocol.LACloningConfig).base
    images = np.arange(4 * 784, dtype=np.uint8).reshape(4, 28, 28, 1)
    labels = np.arange(4, dtype=np.int32) % 2
    data = to_device([DatasetArrays("mnist", "t", "test", images, labels, 2, 0.5, 0.25)])
    ep = sample_episode_full(jax.random.PRNGKey(0), data, episode_spec(base, 6))
    assert not bool(ep.projected)
    want = (images.reshape(4, 784)[np.asarray(ep.indices)] / 255.0 - 0.5) / 0.25
    np.testing.assert_allclose(ep.xs, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("has_kernel", [True, False])
def test_the_default_runs_the_fused_kernel_only_where_it_runs(monkeypatch, has_kernel):
    """``impl: auto`` (the presets) is the fused CPU kernel on AVX-512 machines and the
    network's own 'auto' elsewhere, so `make la-cloning` runs on any CPU; an explicit
    ``impl`` is kept as asked."""
    from vsml_jax.config import load_config

    monkeypatch.setattr(protocol.kernel, "available", lambda: has_kernel)
    preset = Path(protocol.__file__).parent / "configs" / "la_cloning.yaml"
    cfg = load_config(preset, cls=protocol.LACloningConfig)
    assert protocol.clone_network(cfg).impl == ("fused" if has_kernel else "auto")
    fast = load_config(preset, ["impl=fast"], cls=protocol.LACloningConfig)
    assert protocol.clone_network(fast).impl == "fast"
    small = load_config(preset, ["cell.hidden=8"], cls=protocol.LACloningConfig)
    assert protocol.clone_network(small).impl == "auto"  # the kernel is for hidden 16


@pytest.mark.needs_data("mnist", "cifar10")
def test_improve_mixes_grey_cifar10_with_the_digits_at_one_size():
    from vsml_jax.build import load_arrays, load_config, place_data
    from vsml_jax.runtime.devices import population_mesh

    preset = "experiments/la_cloning/configs/la_cloning.yaml"
    mix = "improve.train_sets=[mnist,mnist,mnist,cifar10]"  # a set listed k times: k shares
    cfg = load_config(preset, [mix], cls=protocol.LACloningConfig)
    run = protocol.improve_run_config(cfg, "grad", Path("r/clone"))
    arrays = load_arrays(run, run.data.train_sets, "train")
    arrays = [a.replace(images=a.images[:50], labels=a.labels[:50]) for a in arrays]
    data = place_data(run, arrays, population_mesh())
    assert data.names == ("mnist",) * 3 + ("cifar10",) and data.input_shape == (14, 14, 1)
    assert np.asarray(data.sizes).tolist() == [50] * 4


def test_improve_runs_meta_train_from_the_clone_on_their_own_episodes():
    from vsml_jax.build import load_config
    from vsml_jax.config import ConfigError

    preset, L = "experiments/la_cloning/configs/la_cloning.yaml", protocol.LACloningConfig
    cfg = load_config(preset, ["improve.projection_prob=0.25"], cls=L)
    for trainer, every in (("grad", cfg.improve.grad.steps_per_call), ("es", 2)):
        run = protocol.improve_run_config(cfg, trainer, Path("r/clone"))
        assert (run.trainer, run.init_from, run.checkpoint_every) == (trainer, "r/clone", every)
        d = run.data
        assert (d.image_size, d.projection_prob, d.episode_length) == ((14, 14), 0.25, 500)
        assert (d.early_steps, d.early_weight, d.input_dim) == (100, 4.0, None)
        assert (d.train_sets, d.grey) == (("mnist",), True)
        assert run.network == protocol.clone_network(cfg)
    # the meta-test keeps the test format: all 784 pixels, not projected
    assert cfg.base.data.image_size is None and cfg.base.data.projection_prob == 0.0
    assert cfg.base.data.train_sets == ("mnist",)
    with pytest.raises(ConfigError, match="^improve: data: early_weight must be a finite"):
        load_config(preset, ["improve.trainers=[grad]", "improve.early_weight=0"], cls=L)
    with pytest.raises(ConfigError, match="^improve: data: projection_prob must be in"):
        load_config(preset, ["improve.trainers=[es]", "improve.projection_prob=2"], cls=L)
    with pytest.raises(ConfigError, match="improve.trainers takes each of 'grad' and 'es'"):
        load_config(preset, ["improve.trainers=[sgd]"], cls=protocol.LACloningConfig)
    with pytest.raises(ConfigError, match="must be a multiple of es.generations_per_call"):
        load_config(
            preset,
            ["improve.trainers=[es]", "improve.es.generations=5"],
            cls=protocol.LACloningConfig,
        )
