"""Figures without pyplot: an Agg-backed Figure, and an atomic PNG write.

Built as ``matplotlib.figure.Figure`` objects with the Agg canvas attached, so
no GUI backend is looked up (cron and CI have no display) and no global figure
state leaks between calls.
"""
from __future__ import annotations

import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """A ``width`` x ``height`` inch figure on the Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)  # attach the Agg canvas explicitly: no backend lookup
    return fig


def save_png(fig: Figure, path: str | os.PathLike, dpi: int = DPI) -> None:
    """Write ``fig`` to ``path`` as PNG, atomically (never a half-written image at ``path``)."""
    from pipeline.store import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
