"""The TPU pod plan: compile a small config's training block for a TPU topology without a
TPU (libtpu, the ``tpu`` extra that ``make test`` installs) and check its numbers agree."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import plan

TINY = [
    "data.train_sets=[random]",  # 20 examples: the dataset does not dominate the bytes
    "data.input_dim=8",
    "data.episode_length=5",
    "es.generations=4",
    "es.generations_per_call=2",
    "network.cell.hidden=4",
    "network.cell.message=2",
]
ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = "experiments/es_mnist/configs/quickstart.yaml"


def _libtpu_env() -> dict:
    """The environment of a plan subprocess that can import libtpu: ``make test`` installs
    it into a folder of its own (``$VSML_LIBTPU_DIR``), off the path of every other test,
    since any JAX process that can import it prints libtpu's start-up warnings."""
    env = dict(os.environ)
    extra = os.environ.get("VSML_LIBTPU_DIR")
    if extra and (Path(extra) / "libtpu").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [extra, str(ROOT), env.get("PYTHONPATH")]))
    elif not plan.have_libtpu():
        if os.environ.get("CI"):
            pytest.fail(f"libtpu is missing in CI; make test installs it ({plan.INSTALL})")
        pytest.skip(f"libtpu is not installed ({plan.INSTALL})")
    return env


def _plan(*argvs: list[str]) -> subprocess.CompletedProcess:
    """``python -m benchmarks.plan`` with each of ``argvs``, in one subprocess (one start-up
    of JAX and libtpu for all); it stops at the first that fails."""
    code = (
        "import json, sys\n"
        "from benchmarks import plan\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    rc = plan.main(argv)\n"
        "    if rc:\n"
        "        sys.exit(rc)\n"
    )
    argvs = [["--config", QUICKSTART, *argv] for argv in argvs]
    return subprocess.run(
        ["timeout", "-s", "KILL", "600", sys.executable, "-c", code, json.dumps(argvs)],
        cwd=ROOT,
        env=_libtpu_env(),
        capture_output=True,
        text=True,
    )


def _run_plans(*pairs: int) -> tuple[list[dict], str]:
    """The plan's JSON line for each population size (``es.population_pairs``) on v5e:2x2."""
    argvs = []
    for n in pairs:
        argv = ["--topology", "v5e:2x2"]
        for override in [*TINY, f"es.population_pairs={n}"]:
            argv += ["--set", override]
        argvs.append(argv)
    p = _plan(*argvs)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [x for x in p.stdout.splitlines() if x.startswith("plan: ")]
    assert len(lines) == len(pairs), p.stdout[-3000:]
    return [json.loads(x.removeprefix("plan: ")) for x in lines], p.stdout


def test_plan_compiles_and_its_costs_scale_with_the_members_per_chip():
    """The command's JSON line for 2 members per chip, then 4 members per chip: both fit,
    twice the members cost about twice the flops and bytes of a step, the same per
    member, and the estimate is the roofline of those numbers."""
    (small_plan, large_plan), out = _run_plans(4, 8)
    small, large = small_plan["runs"][0], large_plan["runs"][0]
    assert "matmul precision: highest" in out
    assert set(small["by_precision"]) == {"default", "highest"}
    assert (small["members_per_chip"], large["members_per_chip"]) == (2, 4)
    for q in (small, large):
        assert q["fits"] and 0 < q["peak_bytes"] < q["hbm_bytes"]
        assert q["s_per_step"] == max(q["s_per_step_compute"], q["s_per_step_memory"]) > 0
        assert q["run_s"] == pytest.approx(q["s_per_step"] * 4)
    ratio = large["flops_per_step"] / small["flops_per_step"]
    assert 1.7 < ratio < 2.3, ratio
    per_member = large["flops_per_member_step"] / small["flops_per_member_step"]
    assert 0.8 < per_member < 1.25, per_member
    assert large["bytes_per_step"] > 1.3 * small["bytes_per_step"]


def test_plan_without_libtpu_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setattr(plan, "have_libtpu", lambda: False)
    assert plan.main(["--config", QUICKSTART, "--topology", "v5e:2x2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and plan.INSTALL in err


def test_plan_rejects_an_unknown_topology():
    p = _plan(["--topology", "v9x:2x2"])
    assert p.returncode == 2
    assert "unknown topology 'v9x:2x2'" in p.stderr.strip().splitlines()[-1]


def test_a_la_cloning_preset_plans_its_meta_training_from_the_clone():
    """The paper-scale la_cloning preset stands for its two improvement runs, as the
    command builds them, with the clone's shapes (meta_init's) and XLA's network."""
    from experiments.la_cloning import protocol
    from vsml_jax.config import load_config

    preset = "experiments/la_cloning/configs/la_cloning_paper.yaml"
    runs = plan.run_configs(preset, [], None)
    assert [(cfg.trainer, n) for cfg, n in runs] == [("grad", 1), ("es", 1)]
    la = load_config(preset, [], protocol.LACloningConfig)
    for cfg, _ in runs:
        built = protocol.improve_run_config(la, cfg.trainer, Path("clone"))
        assert cfg.init_from is None and cfg.network.impl == "auto"
        assert cfg.data == built.data and cfg.schedule == built.schedule
        assert cfg.data.image_size is None and cfg.data.episode_length == 500  # 784 inputs
    cpu = "experiments/la_cloning/configs/la_cloning.yaml"
    with pytest.raises(plan.PlanError, match=r"meta-trains nothing \(improve.trainers is empty\)"):
        plan.run_configs(cpu, [], None)
