"""`python -m experiments.invariances` end to end at a toy scale; the task mixture."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from experiments.invariances.protocol import mixture_evaluate

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "native_size=4",
    "train_sizes=[4,5]",
    "init_pretrained=null",
    "base.network.cell.hidden=4",
    "base.network.cell.message=2",
    "base.cpu_devices=1",
    "base.data.episode_length=8",
    "base.es.population_pairs=2",
    "base.es.generations=4",
    "base.es.generations_per_call=2",
    "base.checkpoint_every=2",
    "base.eval.num_episodes=3",
    "base.eval.episode_length=12",
    "base.eval.baseline_lrs=[0.1]",
    "base.eval.baselines=[sgd,ncm]",
    "test_sets=[mnist]",
    "test_cases=[{label: 5 classes, classes: 5}, {label: 6x6 permuted, size: 6, permute: true}]",
]


def test_mixture_evaluate_switches_between_grids():
    """Each call runs one of the evaluations, chosen by its key; all are reached."""
    evals = [lambda pop, key, i=i: jnp.full((pop.shape[0],), float(i)) for i in range(3)]
    f = jax.jit(mixture_evaluate(evals))
    pop = jnp.zeros((4, 2))
    got = {float(f(pop, jax.random.PRNGKey(s))[0]) for s in range(40)}
    assert got == {0.0, 1.0, 2.0}
    assert mixture_evaluate(evals[:1]) is evals[0]


def _run(out_dir, *args):
    sets = [a for s in TINY for a in ("--set", s)]
    cmd = [sys.executable, "-m", "experiments.invariances", *sets, "--set", f"out_dir={out_dir}"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [*cmd, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_invariances_writes_its_outputs_and_resume_recomputes_nothing(tmp_path):
    p = _run(tmp_path)
    assert p.returncode == 0, p.stderr
    run = Path(next(x for x in p.stdout.splitlines() if x.startswith("run dir: "))[9:])
    assert (run / "figure.png").stat().st_size > 0
    rows = (run / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 4  # 2 cases x (2 VSMLs + sgd + ncm)
    assert "Meta RNN" in (run / "results.md").read_text()
    for stage in ("mixture", "plain"):  # run directories that restore_run reads
        assert (run / stage / "summary.json").exists() and (run / stage / "task.json").exists()
    cached = {f: f.stat().st_mtime_ns for f in (run / "meta_test").glob("*.npz")}
    assert len(cached) == 8
    p = _run(tmp_path, "--resume", str(run))
    assert p.returncode == 0, p.stderr
    assert {f: f.stat().st_mtime_ns for f in (run / "meta_test").glob("*.npz")} == cached
    assert "generation" not in p.stderr  # nothing is meta-trained again


def test_bad_test_case_is_one_line_error():
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.invariances",
            "--set",
            "test_cases=[{label: x, classes: 11}]",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("error: ")


def test_test_case_without_label_is_a_config_error():
    from experiments.invariances.protocol import InvariancesConfig
    from vsml_jax.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="needs a label"):
        load_config(None, ["test_cases=[{classes: 5}]"], cls=InvariancesConfig)


@pytest.mark.needs_data("mnist")
def test_nonfinite_fitness_stops_meta_training_before_any_checkpoint(tmp_path, monkeypatch):
    """The mixture stage stops after ``max_skipped`` consecutive skipped updates, as
    training does, and never checkpoints them (NaN meta-parameters: every fitness NaN)."""
    from experiments.invariances import protocol as invariances
    from vsml_jax.config import load_config
    from vsml_jax.train import NonFiniteFitnessError

    start_point = invariances.start_point

    def nan_start(cfg):
        network, params = start_point(cfg)
        return network, jax.tree.map(lambda x: x * jnp.nan, params)

    monkeypatch.setattr(invariances, "start_point", nan_start)
    preset = ROOT / "experiments/invariances/configs/invariances.yaml"
    cfg = load_config(preset, [*TINY, "base.max_skipped=2"], cls=invariances.InvariancesConfig)
    with pytest.raises(NonFiniteFitnessError, match="2 consecutive updates"):
        invariances.run(cfg, tmp_path)
    assert not list(tmp_path.glob("mixture/checkpoints/[0-9]*"))
