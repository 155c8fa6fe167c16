"""Figures: the meta-loss curve and accuracy-vs-step curves (like the paper's Fig. 6),
bar charts (Figs. 7, 8), per-step class-probability heat maps (Fig. 9), and general
curves (several series, with or without error bars; pairs of traces). Every figure of
the library and of the experiments is drawn here; the experiments compute, then call."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np


@functools.cache
def _pyplot():
    """matplotlib's pyplot on the Agg backend, imported at the first figure (most
    processes, e.g. a pod's workers, never draw one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average along the last axis (window clipped at the start)."""
    if window <= 1:
        return y
    c = np.cumsum(np.asarray(y, np.float64), axis=-1)
    out = c.copy()
    out[..., window:] = c[..., window:] - c[..., :-window]
    n = np.minimum(np.arange(1, y.shape[-1] + 1), window)
    return out / n


def colors(n: int) -> list:
    """``n`` distinct colours: matplotlib's default cycle (tab10) up to 10, else tab20
    (the default cycle repeats after 10, which would give two learners one colour)."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    plt = _pyplot()
    cmap = plt.get_cmap("tab20" if n <= 20 else "gist_ncar")
    return [cmap(i if n <= 20 else i / n) for i in range(n)]


def plot_accuracy_curves(
    curves: dict[str, dict[str, np.ndarray]], path, title: str = "", log_x: bool = False
):
    """``curves[dataset][learner] = accuracy [episodes, T]``; mean ± 95% CI per step.
    ``log_x`` spreads out the first steps, where meta-learned learners differ most."""
    plt = _pyplot()
    n = len(curves)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.6), squeeze=False)
    learners = list(dict.fromkeys(name for by in curves.values() for name in by))
    color = dict(zip(learners, colors(len(learners))))  # one colour per learner, every panel
    for ax, (dataset, by_learner) in zip(axes[0], curves.items()):
        for learner, acc in by_learner.items():
            acc = np.asarray(acc, np.float64)
            T = acc.shape[-1]
            s = smooth(acc, max(1, T // 40))
            mean = s.mean(0)
            ci = 1.96 * s.std(0) / np.sqrt(max(1, s.shape[0]))
            steps = np.arange(1, T + 1)
            ax.plot(steps, mean, label=learner, color=color[learner])
            ax.fill_between(steps, mean - ci, mean + ci, alpha=0.2, color=color[learner])
        ax.set_title(dataset)
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel("step (examples seen)")
        ax.set_ylabel("online accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _save(fig, path) -> None:
    plt = _pyplot()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _finish(fig, ax, path, xlabel: str, ylabel: str, title: str = "") -> None:
    """Label a one-axes figure (grid, legend) and save it to ``path``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_curves(
    series: dict[str, tuple],
    path,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    log_y: bool = False,
    smooth_window: int = 1,
    markers: bool = False,
):
    """Several curves on one axes: ``series[label] = (x, y)``, one colour each. ``log_y``
    puts the y axis on a log scale (losses spanning decades); ``smooth_window`` > 1 draws
    each ``y`` as its trailing moving average over that many points (:func:`smooth`);
    ``markers`` marks each point (sparse measurements, a series of one point)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    marker = "o" if markers else None
    for color, (label, (x, y)) in zip(colors(len(series)), series.items()):
        y = smooth(np.asarray(y, np.float64), smooth_window)
        ax.plot(x, y, color=color, label=label, marker=marker)
    if log_y:
        ax.set_yscale("log")
    _finish(fig, ax, path, xlabel, ylabel, title)


def plot_errorbar_curves(
    series: dict[str, tuple],
    path,
    xlabel: str = "",
    ylabel: str = "",
    ylim: tuple[float, float] | None = (0, 1),
):
    """Several curves with error bars: ``series[label] = (x, mean, err)``, markers at the
    points, one colour each (e.g. the accuracy at the k-th occurrence of a class with its
    95% interval)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for color, (label, (x, mean, err)) in zip(colors(len(series)), series.items()):
        ax.errorbar(x, mean, yerr=err, marker="o", capsize=3, label=label, color=color)
    if ylim is not None:
        ax.set_ylim(*ylim)
    _finish(fig, ax, path, xlabel, ylabel)


def plot_paired_traces(
    reference: np.ndarray,
    other: np.ndarray,
    path,
    labels: tuple[str, str] = ("reference", "other"),
    title: str = "",
    ylabel: str = "",
    xlabel: str = "step",
):
    """``n`` quantities traced over ``T`` steps by two methods, ``reference`` and ``other``
    ``[T, n]`` (e.g. the weights of explicit SGD and those read out of its clone): each
    quantity in its own colour, the reference solid and the other dashed; ``labels``
    names the two line styles."""
    plt = _pyplot()
    reference, other = np.asarray(reference), np.asarray(other)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    steps = np.arange(1, len(reference) + 1)
    for i in range(reference.shape[1]):
        (line,) = ax.plot(steps, reference[:, i], lw=1.0)
        ax.plot(steps, other[:, i], "--", color=line.get_color(), lw=1.0)
    ax.plot([], [], "k-", label=labels[0])
    ax.plot([], [], "k--", label=labels[1])
    _finish(fig, ax, path, xlabel, ylabel, title)


def plot_class_probabilities(
    panels: dict[str, np.ndarray], labels: np.ndarray, path, shown: int | None = None
):
    """The paper's Fig. 9: per step of one stream, the predicted probability of every class
    as a heat map, one panel per learner (``panels[title] = probs [T, C]``), with the true
    ``labels`` ``[T]`` marked (a white ring; a red cross where the most probable class is
    another). ``shown``: draw only classes ``0..shown-1`` (default: all ``C``)."""
    plt = _pyplot()
    labels = np.asarray(labels)
    shown = shown or next(iter(panels.values())).shape[1]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(9, 1.0 + (0.45 + 0.3 * shown) * len(panels)),
        constrained_layout=True,
    )
    axes = np.atleast_1d(axes)
    steps = np.arange(len(labels))
    for ax, (title, probs) in zip(axes, panels.items()):
        probs = np.asarray(probs)
        im = ax.imshow(
            probs[:, :shown].T, aspect="auto", cmap="viridis", vmin=0, vmax=1, origin="lower"
        )
        wrong = probs.argmax(1) != labels
        ax.scatter(steps, labels, s=18, facecolors="none", edgecolors="white", linewidths=1.0)
        ax.scatter(steps[wrong], labels[wrong], s=14, marker="x", color="red", linewidths=1.0)
        ax.set_yticks(range(shown))
        ax.set_ylabel("class")
        ax.set_title(title, fontsize=9)
    axes[-1].set_xlabel("step")
    fig.colorbar(im, ax=list(axes), fraction=0.02, label="predicted probability")
    _save(fig, path)


def plot_meta_loss(records: list[dict], path):
    """Meta-loss (population mean, with min/max band) against generation."""
    rows = [r for r in records if "meta_loss" in r and r["meta_loss"] is not None]
    if not rows:
        return
    plt = _pyplot()
    g = np.array([r["generation"] for r in rows])
    y = np.array([r["meta_loss"] for r in rows])
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(g, smooth(y, max(1, len(y) // 50)), label="population mean (smoothed)")
    lo = np.array([r.get("meta_loss_min") or np.nan for r in rows])
    hi = np.array([r.get("meta_loss_max") or np.nan for r in rows])
    ax.fill_between(g, lo, hi, alpha=0.15, label="population min/max")
    _finish(fig, ax, path, "generation", "meta-loss (mean online CE)")


def plot_meta_loss_curves(curves: dict[str, np.ndarray], path, chance: float | None = None):
    """Meta-loss of several meta-training runs against the fraction of their meta-training
    done (runs differ in steps/generations), each smoothed; ``chance`` draws ``ln C``."""
    if not curves:
        return
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for color, (name, y) in zip(colors(len(curves)), curves.items()):
        y = np.asarray(y, np.float64)
        x = np.arange(1, len(y) + 1) / len(y)
        ax.plot(x, smooth(y, max(1, len(y) // 30)), color=color, label=f"{name} ({len(y)})")
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=1, label=f"chance (ln C = {chance:.2f})")
    xlabel = "fraction of meta-training (steps or generations in brackets)"
    _finish(fig, ax, path, xlabel, "meta-loss (mean online CE)")


def plot_accuracy_grid(rows: list[dict], path, metric: str = "mean_acc"):
    """Fig. 8 style: per meta-training group, ``metric`` of every LA on every test set
    (bars with 95% CI; hatched bars are datasets seen in meta-training)."""
    plt = _pyplot()
    groups = list(dict.fromkeys(r["train_sets"] for r in rows))
    las = list(dict.fromkeys(r["la"] for r in rows))
    tests = list(dict.fromkeys(r["test_set"] for r in rows))
    fig, axes = plt.subplots(
        len(groups),
        1,
        figsize=(1.4 * len(tests) * max(1, len(las) / 4) + 2, 3.2 * len(groups)),
        squeeze=False,
    )
    width = 0.8 / max(1, len(las))
    color = colors(len(las))
    for ax, group in zip(axes[:, 0], groups):
        for j, la in enumerate(las):
            for i, t in enumerate(tests):
                r = next(
                    (
                        r
                        for r in rows
                        if r["train_sets"] == group and r["la"] == la and r["test_set"] == t
                    ),
                    None,
                )
                if r is None:
                    continue
                ax.bar(
                    i + j * width,
                    r[metric],
                    width,
                    yerr=r.get("ci95") or 0.0,
                    color=color[j],
                    hatch="//" if r["seen"] else None,
                    label=la if i == 0 else None,
                    edgecolor="white",
                )
        ax.set_xticks(np.arange(len(tests)) + 0.4 - width / 2, tests)
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(f"meta-trained on {group} (hatched: seen)")
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, ncol=min(len(las), 5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_grouped_bars(
    panels: dict[str, tuple[list[dict], str, str]],
    path,
    group_key: str,
    bar_key: str,
    ncols: int = 2,
):
    """Grouped bar charts (the paper's Fig. 7): ``panels[title] = (rows, metric, ci)``;
    in each panel one group per distinct ``row[group_key]`` and one bar (mean ± ``ci``)
    per ``row[bar_key]``, with one colour per bar label across all panels."""
    plt = _pyplot()
    bars = list(dict.fromkeys(r[bar_key] for rows, _, _ in panels.values() for r in rows))
    color = dict(zip(bars, colors(len(bars))))
    n = len(panels)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    groups_max = max(len({r[group_key] for r in rows}) for rows, _, _ in panels.values())
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(0.9 * groups_max * max(1, len(bars) / 4) + 3, 3.3 * nrows),
        squeeze=False,
    )
    width = 0.8 / max(1, len(bars))
    for ax, (title, (rows, metric, ci)) in zip(axes.flat, panels.items()):
        groups = list(dict.fromkeys(r[group_key] for r in rows))
        for j, bar in enumerate(bars):
            xs, ys, es = [], [], []
            for i, g in enumerate(groups):
                r = next((r for r in rows if r[group_key] == g and r[bar_key] == bar), None)
                if r is not None:
                    xs.append(i + j * width)
                    ys.append(r[metric])
                    es.append(r.get(ci) or 0.0)
            ax.bar(xs, ys, width, yerr=es, color=color[bar], label=bar, edgecolor="white")
        ax.set_xticks(
            np.arange(len(groups)) + 0.4 - width / 2, groups, fontsize=8, rotation=20, ha="right"
        )
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(title)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, ncol=min(len(bars), 4))
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
