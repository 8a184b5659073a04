"""Figures of the evaluation stage, each with its caption computed from the same data.

Every figure function takes plain arrays or DataFrames and returns a
``matplotlib.figure.Figure`` drawn through :mod:`pipeline.figures` (no pyplot);
none needs a model. Each ``*_caption`` function says in words what its figure shows.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from pipeline.figures import image_grid, new_figure

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def confusion_figure(cm: np.ndarray) -> "Figure":
    """Confusion matrix (K, K), rows = true, columns = predicted; off-diagonal cells on a log scale."""
    from matplotlib.colors import LogNorm

    cm = np.asarray(cm)
    k = cm.shape[0]
    off = np.where(np.eye(k, dtype=bool), np.nan, cm.astype(float))
    off[off == 0] = np.nan  # empty cells stay white so the few errors stand out
    fig = new_figure(6.2, 5.4)
    ax = fig.add_subplot()
    vmax = np.nanmax(off) if np.isfinite(off).any() else 1.0
    image = ax.imshow(off, cmap="Reds", norm=LogNorm(vmin=1, vmax=max(vmax, 2)))
    for t in range(k):
        for p in range(k):
            if cm[t, p]:
                dark = t != p and math.log(cm[t, p]) > 0.6 * math.log(max(vmax, 2))
                color = "tab:blue" if t == p else ("white" if dark else "black")
                ax.text(p, t, str(int(cm[t, p])), ha="center", va="center", fontsize=7, color=color)
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true",
           title="Confusion matrix (errors coloured, log scale)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="count (off-diagonal)")
    return fig


def confusion_caption(cm: np.ndarray, pairs: Sequence[dict[str, int]]) -> str:
    """What the confusion matrix shows: where the errors are and the most frequent confusion."""
    cm = np.asarray(cm)
    errors = int(cm.sum() - np.trace(cm))
    text = ("Rows are true digits, columns predicted ones; errors are coloured on a log scale. "
            f"{_plural(errors, 'error')} in {_plural(int(cm.sum()), 'test image')}")
    if not pairs:
        return text + "."
    top = pairs[0]
    return text + (f"; the most frequent confusion is {top['true']} read as {top['predicted']} "
                   f"({_plural(top['count'], 'time')}).")


def per_class_figure(table: "pd.DataFrame") -> "Figure":
    """Precision, recall and F1 per class (DataFrame from :func:`pipeline.evaluate.metrics.per_class_table`)."""
    fig = new_figure(7, 3.4)
    ax = fig.add_subplot()
    classes = np.arange(len(table))
    width = 0.27
    for i, column in enumerate(["precision", "recall", "f1"]):
        ax.bar(classes + (i - 1) * width, table[column].to_numpy(), width, label=column)
    low = float(table[["precision", "recall", "f1"]].to_numpy().min())
    ax.set(xticks=classes, xticklabels=[str(c) for c in table.index], xlabel="class",
           ylim=(max(0.0, low - 0.02), 1.0), title="Per-class precision, recall and F1")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # beside the bars, never over them
    return fig


def per_class_caption(table: "pd.DataFrame") -> str:
    """The classes with the lowest and highest F1, from the per-class table."""
    worst, best = table["f1"].idxmin(), table["f1"].idxmax()
    return (f"Scores per digit on the test split. Lowest F1: digit {worst} ({table.loc[worst, 'f1']:.4f}, "
            f"recall {table.loc[worst, 'recall']:.4f}); highest: digit {best} ({table.loc[best, 'f1']:.4f}). "
            "The y axis starts just below the lowest score.")


def reliability_figure(table: "pd.DataFrame", ece: float) -> "Figure":
    """Reliability diagram: accuracy against mean confidence per bin, with bin counts below."""
    fig = new_figure(5.2, 5.6)
    ax, ax_count = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centres = ((table["lower"] + table["upper"]) / 2).to_numpy()
    width = float((table["upper"] - table["lower"]).iloc[0])
    filled = table["count"].to_numpy() > 0
    ax.bar(centres[filled], table["accuracy"].to_numpy()[filled], width=width * 0.95,
           edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.plot(table["confidence"].to_numpy()[filled], table["accuracy"].to_numpy()[filled],
            marker="o", color="tab:red", label="(confidence, accuracy)")
    ax.set(ylabel="accuracy", ylim=(0, 1.02), title=f"Reliability diagram (ECE = {ece:.4f})")
    ax.legend(loc="upper left", fontsize=8)
    ax_count.bar(centres[filled], table["count"].to_numpy()[filled], width=width * 0.95, color="grey")
    ax_count.set(yscale="log", xlabel="confidence of the predicted class", ylabel="count", xlim=(0, 1))
    return fig


def reliability_caption(table: "pd.DataFrame", ece: float) -> str:
    """Calibration in words: bins, ECE, and the share of predictions in the most confident bin."""
    n = int(table["count"].sum())
    top = table.iloc[-1]
    return (f"Accuracy against confidence in {len(table)} equal bins (empty bins are not drawn); "
            f"expected calibration error {ece:.4f}. {100 * int(top['count']) / max(n, 1):.1f}% of the "
            f"predictions have confidence above {top['lower']:.2f}.")


def mistakes_figure(images: np.ndarray, mistakes: Sequence[dict[str, Any]], max_cols: int = 8) -> "Figure":
    """Grid of misclassified images (M, H, W) titled "true→predicted (confidence)" and their source index."""
    titles = [f"{m['true']}→{m['predicted']} ({m['confidence']:.2f})\n#{m.get('source_index', m['index'])}"
              for m in mistakes]
    return image_grid(images, titles, "Most confident mistakes: true→predicted (confidence), source index",
                      max_cols=max_cols, empty_text="no mistakes")


def mistakes_caption(mistakes: Sequence[dict[str, Any]], n_errors: int) -> str:
    """How many mistakes are shown, of how many, and their confidence range."""
    if not mistakes:
        return "The model made no mistakes on the test split."
    low, high = mistakes[-1]["confidence"], mistakes[0]["confidence"]
    return (f"The {_plural(len(mistakes), 'test image')} (of {n_errors:,} misclassified) the model got wrong "
            f"with the highest confidence, {low:.2f} to {high:.2f}: true→predicted (confidence), "
            "#index in the original test file.")


def filters_figure(weights: np.ndarray, max_cols: int = 10) -> "Figure":
    """First-layer filters (F, C, kh, kw), first input channel, each scaled to its own range."""
    weights = np.asarray(weights)
    f, _, kh, kw = weights.shape
    # gray_r: white = most negative, black = most positive weight of each filter
    return image_grid(weights[:, 0], [], f"Learned first-layer filters ({f} × {kh}×{kw})",
                      max_cols=max_cols, cell=(1.0, 1.0))


def filters_caption(weights: np.ndarray) -> str:
    f, c, kh, kw = np.asarray(weights).shape
    channel = "" if c == 1 else f" (input channel 0 of {c})"
    return (f"The {f} learned {kh}×{kw} filters of the first convolution{channel}, each scaled to its own "
            "range (dark = positive weight).")


def feature_maps_figure(image: np.ndarray, maps: np.ndarray, title: str, max_maps: int = 32,
                        max_cols: int = 8) -> "Figure":
    """An input image (H, W) beside its feature maps (C, h, w) after one layer (the first ``max_maps``)."""
    from pipeline.figures import grid_shape

    maps = np.asarray(maps)[:max_maps]
    rows, cols = grid_shape(len(maps), max_cols)
    fig = new_figure(0.95 * (cols + 2), 0.95 * rows + 0.5)
    grid = fig.add_gridspec(rows, cols + 2)
    ax = fig.add_subplot(grid[:, :2])
    ax.imshow(image, cmap="gray_r")
    ax.set_title("input", fontsize=8)
    ax.axis("off")
    for i, fmap in enumerate(maps):
        sub = fig.add_subplot(grid[i // cols, 2 + i % cols])
        sub.imshow(fmap, cmap="viridis", interpolation="nearest")
        sub.axis("off")
    fig.suptitle(title, fontsize=9)
    return fig


def feature_maps_caption(maps: np.ndarray, source_index: int, label: int, max_maps: int = 32) -> str:
    c, h, w = np.asarray(maps).shape
    shown = f"all {c}" if c <= max_maps else f"the first {max_maps} of {c}"
    return (f"Output of the first convolution for test image #{source_index} (label {label}): "
            f"{shown} maps of {h}×{w}.")


def members_figure(rows: Sequence[dict[str, Any]], ensemble: dict[str, Any]) -> "Figure":
    """Test accuracy of each ensemble member and of the ensemble, with 95% Wilson intervals.

    ``rows``: per member {"member", "seed", "test_accuracy", "test_errors"}; ``ensemble``:
    {"test_accuracy", "ci95", "n_test"} (see :mod:`pipeline.evaluate.ensemble`).
    """
    from pipeline.evaluate.metrics import wilson_interval

    n = int(ensemble["n_test"])
    accs = [r["test_accuracy"] for r in rows] + [ensemble["test_accuracy"]]
    bounds = [wilson_interval(n - r["test_errors"], n) for r in rows] + [tuple(ensemble["ci95"])]
    labels = [f"m{r['member']}\nseed {r['seed']}" for r in rows] + ["ensemble"]
    pct = 100 * np.array(accs)
    err = 100 * np.abs(np.array(bounds).T - np.array(accs))  # (2, K + 1): below, above
    fig = new_figure(max(4.0, 0.8 * len(labels) + 1.5), 3.4)
    ax = fig.add_subplot()
    colors = ["tab:blue"] * len(rows) + ["tab:red"]
    ax.errorbar(range(len(labels)), pct, yerr=err, fmt="none", ecolor="grey", capsize=4)
    ax.scatter(range(len(labels)), pct, c=colors, zorder=3)
    ax.axhline(100 * float(np.mean(accs[:-1])), color="tab:blue", linestyle=":", linewidth=1, label="mean member")
    ax.set(xticks=range(len(labels)), xticklabels=labels, ylabel="test accuracy (%)",
           title="Test accuracy, 95% Wilson intervals")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def members_caption(rows: Sequence[dict[str, Any]], ensemble: dict[str, Any]) -> str:
    """The ensemble's test accuracy against its mean and its best member, in points."""
    mean = float(np.mean([r["test_accuracy"] for r in rows]))
    best = max(rows, key=lambda r: r["test_accuracy"])
    acc, (lo, hi) = ensemble["test_accuracy"], ensemble["ci95"]

    def points(delta: float) -> str:
        return f"{abs(100 * delta):.2f} points {'above' if delta >= 0 else 'below'}"

    return (f"The ensemble of {len(rows)} members, averaging their probabilities, scores {100 * acc:.2f}% "
            f"(95% interval {100 * lo:.2f}–{100 * hi:.2f}%): {points(acc - mean)} the mean member "
            f"({100 * mean:.2f}%) and {points(acc - best['test_accuracy'])} the best one "
            f"({100 * best['test_accuracy']:.2f}%, seed {best['seed']}). Error bars are 95% Wilson intervals.")
