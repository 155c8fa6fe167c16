"""End to end: the meta-training run on real MNIST (in-process), resume after a kill (in
subprocesses), bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import xla_flags
from vsml_jax.runtime.checkpoint import Checkpointer

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "--config",
    "experiments/es_mnist/configs/quickstart.yaml",
    "--set",
    "cpu_devices=1",
    "--set",
    "data.input_dim=8",
    "--set",
    "data.episode_length=10",
    "--set",
    "es.population_pairs=4",
    "--set",
    "es.generations_per_call=5",
    "--set",
    "checkpoint_every=10",
    "--set",
    "eval.every=0",
    "--set",
    "eval.episode_length=30",
    "--set",
    "eval.num_episodes=4",
    "--set",
    "eval.baseline_lrs=[0.01,0.1]",
    "--set",
    "tensorboard=false",
]


def _cli(tmp_path, *args, env=None, **kw):
    cmd = [
        sys.executable,
        "-m",
        "experiments.es_mnist",
        *TINY,
        "--set",
        f"out_dir={tmp_path}",
        *args,
    ]
    e = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}))
    return subprocess.Popen(
        cmd, cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def _run(tmp_path, *args, env=None, timeout=300):
    p = _cli(tmp_path, *args, env=env)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _main(capsys, tmp_path, *args):
    """``python -m experiments.es_mnist`` in this process: ``(rc, stdout, stderr)``."""
    from experiments.es_mnist.main import main

    rc = main([*TINY, "--set", f"out_dir={tmp_path}", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _run_dir(out: str) -> Path:
    line = next(x for x in out.splitlines() if x.startswith("run dir: "))
    return Path(line.removeprefix("run dir: "))


def _final_mean(run_dir: Path, step: int):
    ckpt = Checkpointer(run_dir / "checkpoints")
    try:
        return np.asarray(ckpt.restore_raw(step)["mean"])
    finally:
        ckpt.close()


@pytest.mark.slow
@pytest.mark.needs_data("mnist", "fashion_mnist")
def test_run_writes_metrics_checkpoints_and_plots(tmp_path, capsys):
    rc, out, err = _main(capsys, tmp_path, "--set", "es.generations=20", "--set", "eval.every=10")
    assert rc == 0, err
    run = _run_dir(out)
    assert f"done: {run}" in out
    assert (run / "config.yaml").exists()
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    gens = [r for r in records if "meta_loss" in r]
    assert [r["generation"] for r in gens] == list(range(1, 21))
    for key in ("meta_loss_std", "sigma", "steps_per_s"):
        assert all(np.isfinite(r[key]) for r in gens)
    assert gens[0]["sigma"] == pytest.approx(0.05)
    evals = [r for r in records if "eval/mnist/vsml/mean_acc" in r]
    assert [r["generation"] for r in evals] == [10, 20]
    assert "eval/fashion_mnist/sgd/last100_acc" in evals[-1]
    # the meta-learned learner's paired differences to each baseline, on the same episodes
    paired = {"eval/mnist/vsml/d_mean_vs_sgd", "eval/mnist/vsml/wins_last100_vs_ncm"}
    assert paired <= set(evals[-1])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["10", "20"]
    for f in ("meta_test.png", "meta_loss.png", "summary.json"):
        assert (run / f).stat().st_size > 0
    curves = np.load(run / "eval" / "curves_gen000020.npz")
    assert curves["mnist|vsml (meta-learned)"].shape == (4, 30)


@pytest.mark.slow
@pytest.mark.needs_data("mnist", "fashion_mnist")
def test_resume_after_kill_equals_uninterrupted_run(tmp_path, capsys):
    gens = ["--set", "es.generations=40", "--set", "eval.datasets=[]"]
    rc, out, err = _main(capsys, tmp_path / "a", *gens)  # the reference, in this process
    assert rc == 0, err
    reference = _final_mean(_run_dir(out), 40)

    p = _cli(tmp_path / "b", *gens)
    deadline = time.time() + 240
    ckpts = None
    while time.time() < deadline and p.poll() is None:
        found = list((tmp_path / "b").glob("quickstart/*/checkpoints/10"))
        if found:
            ckpts = found[0].parent
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    p.wait(timeout=60)
    assert ckpts is not None, "the run ended before writing its first checkpoint"
    run_b = ckpts.parent
    assert 40 not in [int(c.name) for c in ckpts.iterdir() if c.name.isdigit()]

    rc, out, err = _run(tmp_path / "b", "--resume", str(run_b))
    assert rc == 0, err
    assert "resumed from generation" in out
    np.testing.assert_array_equal(_final_mean(run_b, 40), reference)


def test_bad_config_key_is_one_line_error(tmp_path, capsys):
    rc, out, err = _main(capsys, tmp_path, "--set", "es.populaton_pairs=4")
    assert rc == 2
    assert err.strip().splitlines() == [
        "error: unknown config key es.populaton_pairs; valid keys under es: eval_batch, "
        "fitness_shaping, generations, generations_per_call, lr, population_pairs, sigma, "
        "strategy"
    ]


def test_missing_dataset_is_one_line_error(tmp_path):
    (tmp_path / "nodata").mkdir()
    rc, out, err = _run(
        tmp_path,
        "--set",
        "data.train_sets=[emnist]",
        env={"VSML_DATA_DIR": str(tmp_path / "nodata")},
    )
    assert rc == 2
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert (
        len(lines) == 1 and "emnist" in lines[0] and "python -m vsml_jax.data prepare" in lines[0]
    )


def test_population_not_dividing_devices_is_one_line_error(tmp_path):
    rc, out, err = _run(
        tmp_path,
        "--set",
        "es.population_pairs=3",
        env={"XLA_FLAGS": xla_flags("--xla_force_host_platform_device_count=4")},
    )
    assert rc == 2
    assert "population size 6 does not divide over 4 devices" in err


@pytest.mark.slow
@pytest.mark.needs_data("mnist", "fashion_mnist")
def test_corrupt_checkpoint_is_one_line_error_and_deletes_nothing(tmp_path, capsys):
    rc, out, err = _main(
        capsys, tmp_path, "--set", "es.generations=10", "--set", "eval.datasets=[]"
    )
    assert rc == 0, err
    run = _run_dir(out)
    for f in (run / "checkpoints" / "10").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"garbage")
    rc, out, err = _main(capsys, tmp_path, "--resume", str(run), "--set", "es.generations=20")
    assert rc == 2
    assert "checkpoint" in err and "cannot be restored" in err
    assert (run / "checkpoints" / "10").exists()


@pytest.mark.needs_data("mnist")
def test_load_data_filters_and_relabels_classes():
    from vsml_jax.build import load_data
    from vsml_jax.config import load_config
    from vsml_jax.runtime.devices import population_mesh

    cfg = load_config(None, ["data.classes=[7, 3]"])
    data = load_data(cfg, ["mnist"], "test", population_mesh())
    labels = np.asarray(data.labels)
    assert set(np.unique(labels)) == {0, 1}
    assert (labels == 0).sum() == 1028 and (labels == 1).sum() == 1010  # MNIST test: 7s, 3s


@pytest.mark.slow
@pytest.mark.needs_data("mnist", "fashion_mnist")
def test_init_from_loads_exactly_and_rejects_other_learners_or_shapes(tmp_path, capsys):
    import jax
    from jax.flatten_util import ravel_pytree

    from vsml_jax.build import build_learner
    from vsml_jax.config import load_config
    from vsml_jax.learners.base import TaskSpec
    from vsml_jax.loading import initial_meta_params

    rc, out, err = _main(
        capsys, tmp_path, "--set", "es.generations=10", "--set", "eval.datasets=[]"
    )
    assert rc == 0, err
    source = _run_dir(out)
    saved = _final_mean(source, 10)

    def cfg_with(*overrides):
        sets = [a for a in TINY[2:] if a != "--set"]
        return load_config(TINY[1], [*sets, f"init_from={source}", *overrides])

    cfg = cfg_with()
    like = build_learner(cfg).meta_init(jax.random.PRNGKey(5), TaskSpec(8, 10))
    loaded = initial_meta_params(cfg, like)
    flat, _ = ravel_pytree(loaded)
    np.testing.assert_array_equal(np.asarray(flat), saved)  # bitwise

    with pytest.raises(ValueError, match="trained learner 'vsml'.*'hebbian'"):
        initial_meta_params(cfg_with("learner=hebbian"), like)
    small = cfg_with("network.cell.hidden=8")
    like_small = build_learner(small).meta_init(jax.random.PRNGKey(5), TaskSpec(8, 10))
    with pytest.raises(ValueError, match="do not fit this run's learner"):
        initial_meta_params(small, like_small)
    with pytest.raises(FileNotFoundError, match="is not a run directory"):
        initial_meta_params(cfg_with(f"init_from={tmp_path}"), like)

    # through the CLI: a mismatched init_from is one line, exit 2
    rc, out, err = _main(
        capsys, tmp_path, "--set", f"init_from={source}", "--set", "network.cell.hidden=8"
    )
    assert rc == 2
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "init_from" in errors[0] and "Traceback" not in err
