"""Figures of the evaluation stage (matplotlib, Agg backend, PNG written atomically).

Each function takes plain arrays or DataFrames and a path; none needs a model.
"""
from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: cron and CI have no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    from pipeline.figures import save_png

    save_png(fig, path)
    _pyplot().close(fig)  # pyplot keeps every figure it made until closed


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = min(n, max_cols)
    return max(1, math.ceil(n / max(cols, 1))), max(cols, 1)


def confusion_figure(cm: np.ndarray, path: str | os.PathLike) -> None:
    """Confusion matrix (K, K), rows = true, columns = predicted; off-diagonal cells on a log scale."""
    plt = _pyplot()
    from matplotlib.colors import LogNorm

    cm = np.asarray(cm)
    k = cm.shape[0]
    off = np.where(np.eye(k, dtype=bool), np.nan, cm.astype(float))
    off[off == 0] = np.nan  # empty cells stay white so the few errors stand out
    fig, ax = plt.subplots(figsize=(6.2, 5.4))
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
    fig.tight_layout()
    _save(fig, path)


def per_class_figure(table, path: str | os.PathLike) -> None:
    """Precision, recall and F1 per class (DataFrame from :func:`pipeline.evaluate.per_class_table`)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.4))
    classes = np.arange(len(table))
    width = 0.27
    for i, column in enumerate(["precision", "recall", "f1"]):
        ax.bar(classes + (i - 1) * width, table[column].to_numpy(), width, label=column)
    low = float(table[["precision", "recall", "f1"]].to_numpy().min())
    ax.set(xticks=classes, xticklabels=[str(c) for c in table.index], xlabel="class",
           ylim=(max(0.0, low - 0.02), 1.0), title="Per-class precision, recall and F1")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right", ncol=3)
    fig.tight_layout()
    _save(fig, path)


def reliability_figure(table, ece: float, path: str | os.PathLike) -> None:
    """Reliability diagram: accuracy against mean confidence per bin, with bin counts below."""
    plt = _pyplot()
    fig, (ax, ax_count) = plt.subplots(2, 1, figsize=(5.2, 5.6), sharex=True,
                                       gridspec_kw={"height_ratios": [3, 1]})
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
    fig.tight_layout()
    _save(fig, path)


def mistakes_figure(images: np.ndarray, mistakes: Sequence[dict[str, Any]], path: str | os.PathLike,
                    max_cols: int = 8) -> None:
    """Grid of misclassified images (M, H, W) titled "true→predicted (confidence)"."""
    plt = _pyplot()
    n = max(len(mistakes), 1)
    rows, cols = _grid(n, max_cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, m in zip(axes.ravel(), images, mistakes):
        ax.imshow(image, cmap="gray_r")
        ax.set_title(f"{m['true']}→{m['predicted']} ({m['confidence']:.2f})\n#{m.get('source_index', m['index'])}",
                     fontsize=7)
    if not mistakes:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle("Most confident mistakes: true→predicted (confidence), test index", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def filters_figure(weights: np.ndarray, path: str | os.PathLike, max_cols: int = 10) -> None:
    """First-layer filters (F, C, kh, kw), first input channel, each scaled to its own range."""
    plt = _pyplot()
    weights = np.asarray(weights)
    f = weights.shape[0]
    rows, cols = _grid(f, max_cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.0 * cols, 1.0 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, ax in enumerate(axes.ravel()[:f]):
        w = weights[i, 0]
        ax.imshow(w, cmap="gray_r", interpolation="nearest")  # white = negative, black = positive
    fig.suptitle(f"Learned first-layer filters ({f} × {weights.shape[2]}×{weights.shape[3]})", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def feature_maps_figure(image: np.ndarray, maps: np.ndarray, path: str | os.PathLike, title: str,
                        max_maps: int = 32, max_cols: int = 8) -> None:
    """An input image (H, W) beside its feature maps (C, h, w) after one layer."""
    plt = _pyplot()
    maps = np.asarray(maps)[:max_maps]
    rows, cols = _grid(len(maps), max_cols)
    fig = plt.figure(figsize=(1.2 * (cols + 2), 1.2 * rows + 0.6))
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
    fig.tight_layout()
    _save(fig, path)
