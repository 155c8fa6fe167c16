"""Figures: every learner keeps its own colour, also past matplotlib's ten-colour cycle."""

import matplotlib.colors as mcolors
import numpy as np
import pytest

from vsml_jax import plots


@pytest.mark.parametrize("n", [1, 6, 10, 15, 20, 25])
def test_colors_are_distinct(n):
    assert len({mcolors.to_hex(c) for c in plots.colors(n)}) == n


def test_accuracy_curves_with_many_learners(tmp_path):
    acc = np.random.default_rng(0).random((2, 30))
    curves = {"mnist": {f"la{i}": acc for i in range(12)}, "sum": {"la0": acc}}
    plots.plot_accuracy_curves(curves, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0
