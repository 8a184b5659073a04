"""The exploration's figures, each with the caption that says what it shows, in numbers from the data.

Every ``*_figure`` function draws one :class:`matplotlib.figure.Figure` from already computed
statistics (see :mod:`pipeline.figures`: Agg canvas, no pyplot) and returns it; its
``*_caption`` twin writes the sentence the report prints under it. Nothing here writes files.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.explore.stats import most_similar_pairs, pixel_stats
from pipeline.figures import new_figure

DIGIT_COLORS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]
SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}


def _splits(distribution: pd.DataFrame) -> list[str]:
    return [c[: -len("_share")] for c in distribution.columns if c.endswith("_share")]


def _and(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# --------------------------------------------------------------------------- class distribution
def class_distribution_figure(distribution: pd.DataFrame) -> Figure:
    """Grouped bars of each digit's share in every split (columns "<split>_count", "<split>_share")."""
    splits = _splits(distribution)
    fig = new_figure(8, 3.6)
    ax = fig.add_subplot()
    digits = distribution.index.to_numpy()
    width = 0.8 / max(len(splits), 1)
    for k, split in enumerate(splits):
        total = int(distribution[f"{split}_count"].sum())
        ax.bar(digits + (k - (len(splits) - 1) / 2) * width, distribution[f"{split}_share"] * 100, width,
               label=f"{split} (n={total:,})")
    balanced = 100.0 / len(digits)
    ax.axhline(balanced, color="grey", lw=0.8, ls="--")
    ax.set_xticks(digits)
    ax.set_xlabel("digit")
    ax.set_ylabel("share of split (%)")
    ax.set_title("Class distribution per split (dashed: perfectly balanced)")
    top = max(float(distribution[[f"{s}_share" for s in splits]].to_numpy().max()) * 100, balanced)
    ax.set_ylim(0, max(14.0, 1.2 * top))  # room for the legend above the tallest bar
    ax.legend(loc="upper center", fontsize=8, ncols=len(splits), frameon=False)
    return fig


def class_distribution_caption(distribution: pd.DataFrame) -> str:
    """The splits and their sizes, the range of the class shares, and the train/validation gap."""
    splits = _splits(distribution)
    sizes = _and([f"{SPLIT_WORDS.get(s, s)} ({int(distribution[f'{s}_count'].sum()):,} images)" for s in splits])
    shares = distribution[[f"{s}_share" for s in splits]]
    lo_digit, lo_col = shares.stack().idxmin()
    hi_digit, hi_col = shares.stack().idxmax()
    text = (f"Share of each digit in the {sizes} splits; the dashed line is a perfectly balanced "
            f"{100 / len(distribution):.0f}%. Shares run from {shares.loc[lo_digit, lo_col]:.1%} (digit {lo_digit}, "
            f"{lo_col[: -len('_share')]}) to {shares.loc[hi_digit, hi_col]:.1%} (digit {hi_digit}, "
            f"{hi_col[: -len('_share')]}).")
    if "train" in splits and "val" in splits:
        gap = float((distribution["train_share"] - distribution["val_share"]).abs().max())
        text += (f" Training and validation shares of each digit differ by at most {100 * gap:.2f} percentage "
                 "points: the split is stratified.")
    return text


# --------------------------------------------------------------------------- class mean and std images
def class_images_figure(mean: np.ndarray, std: np.ndarray) -> Figure:
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
    return fig


def class_images_caption(std: np.ndarray, n_images: int) -> str:
    """How many images were averaged, and which digits vary most and least (mean of the std image)."""
    spread = std.reshape(len(std), -1).mean(axis=1)  # (C,): average pixel-wise std of each class
    most, least = int(np.argmax(spread)), int(np.argmin(spread))
    return (f"Top: average of the {n_images:,} training images, per digit. Bottom: pixel-wise standard deviation, "
            f"where writers disagree: digit {most} varies most (mean standard deviation {spread[most]:.3f} on the "
            f"[0, 1] scale), digit {least} least ({spread[least]:.3f}).")


# --------------------------------------------------------------------------- pixel intensities
def pixel_histogram_figure(histogram: pd.DataFrame) -> Figure:
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
    return fig


def pixel_histogram_caption(histogram: pd.DataFrame) -> str:
    """Shares of background, full ink and the values in between, and the most common ink value."""
    stats = pixel_stats(histogram)
    counts = histogram["count"].to_numpy()
    peak = 1 + int(np.argmax(counts[1:]))  # the most common non-zero value
    top = int(histogram.index[-1])
    return (f"Raw intensities of all {int(counts.sum()):,} training pixels: {stats['share_zero']:.1%} are background "
            f"(0), {stats['share_full']:.1%} are full ink ({top}) and {stats['share_intermediate']:.1%} lie in between "
            f"(anti-aliased edges); the most common non-zero value is {peak} "
            f"({histogram['share'].iat[peak]:.1%} of all pixels).")


# --------------------------------------------------------------------------- per-image features
def features_by_class_figure(features: pd.DataFrame, labels: np.ndarray) -> Figure:
    """Box plots per digit of ink mass, bounding-box width, aspect ratio and slant.

    features : per-image features (N rows) of one split; labels : int (N,).
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
    return fig


def features_by_class_caption(feature_summary: pd.DataFrame, share_height_20: float) -> str:
    """Which digits carry the most and least ink, the range of mean slants, and why height is left out.

    feature_summary : :func:`pipeline.data.features.summarize_by_class` of the training split;
    share_height_20 : the share of training images whose bounding box is 20 px high.
    """
    ink, slant = feature_summary["ink_mass_mean"], feature_summary["slant_deg_mean"]
    return (f"Ink mass, bounding-box width, aspect ratio and slant (from second moments) of each training image, by "
            f"digit. Digit {ink.idxmax()} carries the most ink ({ink.max():.0f} full-ink pixels on average), digit "
            f"{ink.idxmin()} the least ({ink.min():.0f}); mean slants run from {slant.min():+.1f}° (digit "
            f"{slant.idxmin()}) to {slant.max():+.1f}° (digit {slant.idxmax()}). Height is left out of the plot (see "
            f"the table): MNIST scales the longer side of each digit to 20 px, and {share_height_20:.1%} of the "
            "heights are 20.")


# --------------------------------------------------------------------------- PCA
def pca_figure(pca: dict) -> Figure:
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
    return fig


def pca_caption(pca: dict) -> str:
    """The sample size and the variance the two plotted components hold."""
    ratio = pca["explained_variance_ratio"]
    return (f"A seeded random sample of {len(pca['labels']):,} training images projected on its first two principal "
            f"components, which hold {ratio[0]:.1%} and {ratio[1]:.1%} of the sample's variance "
            f"({ratio[0] + ratio[1]:.1%} together), coloured by digit; numbers mark class centroids.")


# --------------------------------------------------------------------------- similarity of class means
def mean_similarity_figure(similarity: pd.DataFrame) -> Figure:
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
    return fig


def mean_similarity_caption(similarity: pd.DataFrame, k: int = 3) -> str:
    """The ``k`` most similar digit pairs and the least similar one."""
    pairs = most_similar_pairs(similarity, k=len(similarity) * (len(similarity) - 1) // 2)
    top = _and([f"{p['a']} & {p['b']} ({p['cosine']:.3f})" for p in pairs[:k]])
    low = pairs[-1]
    return (f"Cosine similarity between the per-class mean images. The most similar pairs, whose average shapes "
            f"overlap most, are {top}; the least similar is {low['a']} & {low['b']} ({low['cosine']:.3f}).")
