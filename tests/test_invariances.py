"""`python -m experiments.invariances` end to end (in-process) at a toy scale; the task mixture."""

from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from experiments.invariances.main import main
from experiments.invariances.protocol import mixture_evaluate

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
    "test_cases=[{label: 6x6 permuted, size: 6, permute: true}]",
]


def test_mixture_evaluate_switches_between_grids():
    """Each call runs one of the evaluations, chosen by its key; all are reached."""
    evals = [lambda pop, key, i=i: jnp.full((pop.shape[0],), float(i)) for i in range(3)]
    f = jax.jit(mixture_evaluate(evals))
    pop = jnp.zeros((4, 2))
    got = {float(f(pop, jax.random.PRNGKey(s))[0]) for s in range(40)}
    assert got == {0.0, 1.0, 2.0}
    assert mixture_evaluate(evals[:1]) is evals[0]


def _run(capsys, out_dir, *args):
    """``python -m experiments.invariances`` in-process: ``(rc, stdout, stderr)``."""
    sets = [a for s in TINY for a in ("--set", s)]
    rc = main([*sets, "--set", f"out_dir={out_dir}", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.slow
@pytest.mark.needs_data("mnist")
def test_invariances_writes_its_outputs_and_resume_recomputes_nothing(tmp_path, capsys):
    rc, out, err = _run(capsys, tmp_path)
    assert rc == 0, err
    run = Path(next(x for x in out.splitlines() if x.startswith("run dir: "))[9:])
    assert (run / "figure.png").stat().st_size > 0
    rows = (run / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 4  # 1 case x (2 VSMLs + sgd + ncm)
    assert "Meta RNN" in (run / "results.md").read_text()
    for stage in ("mixture", "plain"):  # run directories that restore_run reads
        assert (run / stage / "summary.json").exists() and (run / stage / "task.json").exists()
    cached = {f: f.stat().st_mtime_ns for f in (run / "meta_test").glob("*.npz")}
    assert len(cached) == 4
    logs = {s: (run / s / "metrics.jsonl").read_bytes() for s in ("mixture", "plain")}
    rc, out, err = _run(capsys, tmp_path, "--resume", str(run))
    assert rc == 0, err
    assert {f: f.stat().st_mtime_ns for f in (run / "meta_test").glob("*.npz")} == cached
    # nothing is meta-trained again
    assert {s: (run / s / "metrics.jsonl").read_bytes() for s in ("mixture", "plain")} == logs


def test_bad_test_case_is_one_line_error(tmp_path, capsys):
    rc, _, err = _run(capsys, tmp_path, "--set", "test_cases=[{label: x, classes: 11}]")
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: class counts must be in 1..")


def test_test_case_without_label_is_a_config_error():
    from experiments.invariances.protocol import InvariancesConfig
    from vsml_jax.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="needs a label"):
        load_config(None, ["test_cases=[{classes: 5}]"], cls=InvariancesConfig)
