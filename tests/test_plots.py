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


def test_general_figures_are_written(tmp_path):
    """The general figures the experiments draw with: curves (log scale, smoothed), curves
    with error bars, paired traces and per-step class-probability heat maps."""
    rng = np.random.default_rng(0)
    x = np.arange(1, 31)
    plots.plot_curves(
        {"loss": (x, rng.random(30) + 0.1), "w": (x, rng.random(30) + 0.1)},
        tmp_path / "curves.png",
        log_y=True,
        smooth_window=5,
    )
    plots.plot_errorbar_curves(
        {"a": (x[:5], rng.random(5), 0.1 * rng.random(5))}, tmp_path / "errorbars.png"
    )
    plots.plot_paired_traces(
        rng.normal(size=(30, 4)), rng.normal(size=(30, 4)), tmp_path / "traces.png"
    )
    probs = rng.dirichlet(np.ones(10), size=(2, 30))
    labels = rng.integers(0, 3, 30)
    plots.plot_class_probabilities({"a": probs[0], "b": probs[1]}, labels, tmp_path / "p.png", 3)
    for name in ("curves", "errorbars", "traces", "p"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
