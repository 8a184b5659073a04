"""PNG figures of the exploration, drawn with matplotlib's Agg renderer.

Each function draws one figure from already computed statistics and writes it
to ``path`` (see :mod:`pipeline.figures`: no pyplot, PNG written atomically).
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from pipeline.figures import new_figure, save_png

DIGIT_COLORS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]


def plot_class_distribution(distribution: pd.DataFrame, path: str | os.PathLike) -> None:
    """Grouped bars of each digit's share in every split (columns "<split>_share")."""
    splits = [c[: -len("_share")] for c in distribution.columns if c.endswith("_share")]
    fig = new_figure(8, 3.6)
    ax = fig.add_subplot()
    digits = distribution.index.to_numpy()
    width = 0.8 / max(len(splits), 1)
    for k, split in enumerate(splits):
        total = int(distribution[f"{split}_count"].sum())
        ax.bar(digits + (k - (len(splits) - 1) / 2) * width, distribution[f"{split}_share"] * 100, width,
               label=f"{split} (n={total:,})")
    ax.axhline(10, color="grey", lw=0.8, ls="--")
    ax.set_xticks(digits)
    ax.set_xlabel("digit")
    ax.set_ylabel("share of split (%)")
    ax.set_title("Class distribution per split (dashed: perfectly balanced)")
    ax.set_ylim(0, 14)
    ax.legend(loc="upper center", fontsize=8, ncols=len(splits), frameon=False)
    save_png(fig, path)


def plot_class_images(mean: np.ndarray, std: np.ndarray, path: str | os.PathLike) -> None:
    """Two rows of ten: per-class mean image (top) and standard-deviation image (bottom).

    mean, std : (10, H, W) on the [0, 1] scale.
    """
    n = len(mean)
    fig = new_figure(1.1 * n, 2.6)
    for c in range(n):
        for row, (stack, name, vmax) in enumerate(((mean, "mean", 1.0), (std, "std", 0.5))):
            ax = fig.add_subplot(2, n, row * n + c + 1)
            ax.imshow(stack[c], cmap="gray_r" if row == 0 else "magma", vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(str(c))
            if c == 0:
                ax.set_ylabel(name)
    save_png(fig, path)


def plot_pixel_histogram(histogram: pd.DataFrame, path: str | os.PathLike) -> None:
    """Pixel-intensity histogram: all values on a log scale, and the non-zero values on a linear one."""
    values = histogram.index.to_numpy()
    counts = histogram["count"].to_numpy()
    fig = new_figure(9, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    # One stairs artist instead of 256 bar patches: same picture, ~20x faster to lay out and draw.
    ax1.stairs(counts, np.append(values, values[-1] + 1) - 0.5, fill=True, color="#444")
    ax1.set_yscale("log")
    ax1.set_title(f"All pixels (log scale): {histogram['share'].iat[0]:.1%} are 0")
    ax1.set_xlabel("intensity (0-255)")
    ax1.set_ylabel("pixels")
    ax2.stairs(counts[1:], np.append(values[1:], values[-1] + 1) - 0.5, fill=True, color="#1f77b4")
    ax2.set_title("Non-zero pixels (linear scale)")
    ax2.set_xlabel("intensity (1-255)")
    save_png(fig, path)


def plot_features_by_class(features: pd.DataFrame, labels: np.ndarray, path: str | os.PathLike) -> None:
    """Box plots per digit of ink mass, bounding-box width, aspect ratio and slant.

    Height is not drawn: MNIST scales each digit's longer side to 20 px, so the
    height of nearly every digit is 20 and its box plot is a flat line; the
    aspect ratio (width / height) carries what is left of it.
    """
    features = features.assign(bbox_aspect=features["bbox_width"] / features["bbox_height"].clip(lower=1))
    panels = [("ink_mass", "ink mass (full-ink pixels)"), ("bbox_width", "bbox width (px)"),
              ("bbox_aspect", "bbox aspect (width / height)"), ("slant_deg", "slant (degrees, + = leans right)")]
    labels = np.asarray(labels)
    fig = new_figure(10, 6)
    axes = fig.subplots(2, 2).ravel()
    for ax, (col, title) in zip(axes, panels):
        values = features[col].to_numpy()
        data = [values[labels == c] for c in range(10)]
        ax.boxplot(data, positions=range(10), widths=0.6, showfliers=False)
        ax.set_title(title)
        ax.set_xlabel("digit")
    fig.suptitle("Per-image features by class (whiskers 1.5 IQR, outliers hidden)")
    save_png(fig, path)


def plot_pca(pca: dict, path: str | os.PathLike) -> None:
    """Scatter of the 2-D PCA projection, one colour per digit, with class centroids labelled."""
    proj, labels = pca["projection"], pca["labels"]
    ratio = pca["explained_variance_ratio"]
    fig = new_figure(7, 6)
    ax = fig.add_subplot()
    for c in range(10):
        pts = proj[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.5, color=DIGIT_COLORS[c], label=str(c), rasterized=True)
        if len(pts):
            cx, cy = pts.mean(axis=0)
            ax.text(cx, cy, str(c), fontsize=14, weight="bold", ha="center", va="center",
                    bbox={"boxstyle": "circle", "fc": "white", "ec": DIGIT_COLORS[c]})
    ax.set_xlabel(f"PC 1 ({ratio[0]:.1%} of variance)")
    ax.set_ylabel(f"PC 2 ({ratio[1]:.1%} of variance)")
    ax.set_title(f"PCA of {len(labels):,} training images")
    ax.legend(markerscale=3, fontsize=8, ncols=2, loc="best")
    save_png(fig, path)


def plot_similarity(similarity: pd.DataFrame, path: str | os.PathLike) -> None:
    """Heat map of the cosine similarity between class mean images, values written in."""
    sim = similarity.to_numpy()
    off = sim[~np.eye(len(sim), dtype=bool)]
    fig = new_figure(6.4, 5.4)
    ax = fig.add_subplot()
    im = ax.imshow(sim, cmap="viridis", vmin=float(off.min()), vmax=1.0)
    for i in range(len(sim)):
        for j in range(len(sim)):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if sim[i, j] > (off.min() + 1) / 2 else "white")
    ax.set_xticks(range(len(sim)))
    ax.set_yticks(range(len(sim)))
    ax.set_xlabel("digit")
    ax.set_ylabel("digit")
    ax.set_title("Cosine similarity of class mean images")
    fig.colorbar(im, ax=ax, shrink=0.8)
    save_png(fig, path)


def plot_examples(images: np.ndarray, captions: list[str], title: str, path: str | os.PathLike, ncols: int = 8) -> None:
    """A grid of example images (e.g. the flagged ones), each with a short caption.

    images : uint8 (K, H, W); captions : K strings. K = 0 draws a note saying so.
    """
    k = len(images)
    nrows = max(1, int(np.ceil(k / ncols)))
    fig = new_figure(1.4 * ncols, 1.6 * nrows + 0.4)
    if k == 0:
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, "no flagged images", ha="center", va="center", fontsize=14)
    for i in range(k):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(captions[i], fontsize=7)
    fig.suptitle(title)
    save_png(fig, path)
