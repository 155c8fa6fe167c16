"""The TPU pod plan: compile a small config's training block for a TPU topology without a
TPU (libtpu, the ``tpu`` extra that ``make test`` installs) and check its numbers agree."""

import json
import os

import pytest

from vsml_jax import plan

TINY = [
    "data.train_sets=[random]",  # 20 examples: the dataset does not dominate the bytes
    "data.input_dim=8",
    "data.episode_length=5",
    "es.generations=4",
    "es.generations_per_call=2",
    "network.cell.hidden=4",
    "network.cell.message=2",
]
QUICKSTART = "experiments/configs/quickstart.yaml"


@pytest.fixture(scope="module")
def v5e_2x2():
    if not plan.have_libtpu():
        if os.environ.get("CI"):
            pytest.fail(f"libtpu is missing in CI; make test installs it ({plan.INSTALL})")
        pytest.skip(f"libtpu is not installed ({plan.INSTALL})")
    return plan.topology("v5e:2x2")


def test_plan_compiles_and_its_costs_scale_with_the_members_per_chip(v5e_2x2, capsys):
    """The command's JSON line for 2 members per chip, then 4 members per chip: both fit,
    twice the members cost about twice the flops and bytes of a step, the same per
    member, and the estimate is the roofline of those numbers."""
    argv = ["--config", QUICKSTART, "--topology", "v5e:2x2"]
    for override in [*TINY, "es.population_pairs=4"]:
        argv += ["--set", override]
    assert plan.main(argv) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("plan: "))
    small = json.loads(line.removeprefix("plan: "))["runs"][0]
    assert "matmul precision: highest" in out
    assert set(small["by_precision"]) == {"default", "highest"}

    from vsml_jax.config import load_config

    topo, chip = v5e_2x2
    cfg = load_config(QUICKSTART, [*TINY, "es.population_pairs=8"])
    large = plan.plan_run(cfg, topo, chip, precisions=())
    assert (small["members_per_chip"], large["members_per_chip"]) == (2, 4)
    for p in (small, large):
        assert p["fits"] and 0 < p["peak_bytes"] < chip.hbm_bytes
        assert p["s_per_step"] == max(p["s_per_step_compute"], p["s_per_step_memory"]) > 0
        assert p["run_s"] == pytest.approx(p["s_per_step"] * 4)
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


def test_plan_rejects_an_unknown_topology(capsys):
    if not plan.have_libtpu():
        pytest.skip(f"libtpu is not installed ({plan.INSTALL})")
    assert plan.main(["--config", QUICKSTART, "--topology", "v9x:2x2"]) == 2
    assert "unknown topology 'v9x:2x2'" in capsys.readouterr().err
