"""experiments/simple_baselines.py on a tiny budget: one table row per dataset and learner."""

import pytest

from experiments.simple_baselines import main as simple_baselines


@pytest.mark.slow
@pytest.mark.needs_data("mnist", "fashion_mnist")
def test_prints_a_row_per_dataset_and_learner(capsys):
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
        ]
    )
    assert rc == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 2 * 3  # header, {mnist, fashion_mnist} x 3 learners
    assert rows[1].startswith("| mnist | ncm |") and rows[-1].startswith("| fashion_mnist | 1nn |")
    assert all(row.endswith("| 2 x 30 |") for row in rows[1:])


def test_unknown_learner_is_one_error_line(capsys):
    assert simple_baselines.main(["--learners", "vsml"]) == 2
    assert "not hand-designed" in capsys.readouterr().err
