"""The fast-association metrics on a hand-computed example, and the command end to end."""

from pathlib import Path

import numpy as np
import pytest

from experiments.introspection.protocol import by_occurrence, fast_association, occurrence_index

# one stream: class 0 at t = 0, 2, 3 and class 1 at t = 1, 4, 5
LABELS = np.array([[0, 1, 0, 0, 1, 1]])
ACC = np.array([[0, 0, 0, 1, 1, 1]], np.float32)
P = np.array([[0.1, 0.1, 0.2, 0.9, 0.6, 0.7]])


def test_occurrence_index():
    np.testing.assert_array_equal(occurrence_index(LABELS), [[0, 0, 1, 2, 1, 2]])


def test_fast_association_by_hand():
    # first error on class 0 at t=0, next occurrence t=2 (p .2, wrong); on class 1 at
    # t=1, next t=4 (p .6, right)
    out = fast_association(P, ACC, LABELS)
    assert out["p_next"] == pytest.approx(0.4) and out["acc_next"] == pytest.approx(0.5)
    assert out["streams"] == 1
    # a second stream: class 2 is never wrong, class 3 wrong only at its last occurrence,
    # so it has no value and the interval is over one stream (NaN)
    two = fast_association(
        np.vstack([P, P]), np.vstack([ACC, [[1, 1, 1, 0, 1, 0]]]), np.vstack([LABELS, LABELS])
    )
    # stream 2: class 0 first wrong at t=3, next none; class 1 first wrong at t=5: none
    assert two["streams"] == 1 and two["p_next"] == pytest.approx(0.4)


def test_accuracy_by_occurrence_by_hand():
    rows = by_occurrence(ACC, LABELS, 4)
    assert [r[0] for r in rows[:3]] == pytest.approx([0.0, 0.5, 1.0])
    assert np.isnan(rows[3][0]) and rows[3][2] == 0  # no class occurs 4 times
    two = by_occurrence(np.vstack([ACC, 1 - ACC]), np.vstack([LABELS, LABELS]), 2)
    assert two[1][0] == pytest.approx(0.5) and two[1][2] == 2
    assert two[0][1] == pytest.approx(1.96 * np.std([0, 1], ddof=1) / np.sqrt(2))


@pytest.mark.slow
@pytest.mark.needs_data("mnist")
def test_introspection_command_writes_its_outputs(tmp_path, capsys):
    from experiments.introspection.main import main

    sets = [
        "num_streams=4",
        "stream_length=12",
        "tune_streams=2",
        "baseline_lrs=[0.1]",
        "baselines=[sgd,ncm]",
        "max_occurrence=3",
        "cpu_devices=1",
        f"out_dir={tmp_path}",
    ]
    rc = main([a for s in sets for a in ("--set", s)])  # in-process
    out = capsys.readouterr()
    assert rc == 0, out.err
    run = Path(next(x for x in out.out.splitlines() if x.startswith("run dir: "))[9:])
    for f in ("heatmap.png", "occurrence.png", "results.md"):
        assert (run / f).stat().st_size > 0, f
    rows = (run / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and rows[1].startswith("VSML")
