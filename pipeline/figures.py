"""The one way figures are drawn: ``matplotlib.figure.Figure`` on the Agg canvas, no pyplot.

No GUI backend is looked up (cron and CI have no display) and no process-wide
figure state exists, so nothing leaks between calls and nothing needs closing.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """A ``width`` x ``height`` inch figure on the Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)  # attach the Agg canvas explicitly: no backend lookup
    return fig


def grid_shape(n: int, max_cols: int) -> tuple[int, int]:
    """(rows, cols) of a grid holding ``n`` panels at most ``max_cols`` wide (at least 1 x 1)."""
    cols = max(1, min(n, max_cols))
    return max(1, math.ceil(n / cols)), cols


def image_grid(images: np.ndarray, titles: Sequence[str], title: str, *, max_cols: int = 8,
               cell: tuple[float, float] = (1.3, 1.5), cmap: str = "gray_r",
               vmin: float | None = None, vmax: float | None = None, empty_text: str = "nothing to show",
               title_size: int = 7) -> Figure:
    """A grid of images (K, H, W), each with a short title; K = 0 draws ``empty_text`` instead."""
    k = len(images)
    rows, cols = grid_shape(k, max_cols)
    fig = new_figure(cell[0] * cols, cell[1] * rows + 0.4)
    if k == 0:
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, empty_text, ha="center", va="center", fontsize=14)
    for i in range(k):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(images[i], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(titles):
            ax.set_title(titles[i], fontsize=title_size)
    fig.suptitle(title, fontsize=9)
    return fig


def save_png(fig: Figure, path: str | os.PathLike, dpi: int = DPI) -> None:
    """Write ``fig`` to ``path`` as PNG, atomically (never a half-written image at ``path``)."""
    from pipeline.store import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
