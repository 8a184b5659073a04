"""Trend charts of the run index, drawn as inline SVG: no network, no script, sharp at any width.

Inline SVG in HTML needs no ``xmlns``, so the index names no URL at all.

A chart plots one value per run against the run's number (1 = oldest), optionally
with an interval drawn as an error bar; each point links to the run's page and names
it in a tooltip. The drawing scales with its container (``viewBox``), so it never
widens the page, and the x labels thin out so that 1 run and 200 runs both read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 560, 250  # the viewBox; the chart is drawn at the width of its container
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 16, 40  # margins for the y labels, the x labels and the axis titles
MAX_X_LABELS = 12
Y_TICKS = 5


@dataclass(frozen=True)
class Point:
    """One run on a chart: its value, an optional interval (low, high), its link and its tooltip."""

    value: float
    low: float | None = None
    high: float | None = None
    href: str = ""
    tooltip: str = ""


def nice_step(span: float, ticks: int = Y_TICKS) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) that cuts ``span`` into about ``ticks`` parts."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def y_range(points: list[Point], floor: float | None = None, ceiling: float | None = None,
            include: float | None = None) -> tuple[float, float, float]:
    """(bottom, top, step) of the y axis: every value and interval (and ``include``) inside, on round
    ticks, within [floor, ceiling] when given (an accuracy never goes past 100%)."""
    values = [v for p in points for v in (p.value, p.low, p.high, include) if v is not None]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:  # one run, or equal values: a band around the value
        pad = abs(hi) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    step = nice_step(hi - lo)
    bottom, top = math.floor(lo / step) * step, math.ceil(hi / step) * step
    if floor is not None:
        bottom = max(bottom, floor)
    if ceiling is not None:
        top = min(top, ceiling)
    if top <= bottom:
        top = bottom + step
    return bottom, top, step


def x_label_step(n: int, most: int = MAX_X_LABELS) -> int:
    """Label every k-th run (k in 1, 2, 5, 10, 20, 50, ...) so that at most ``most`` labels show."""
    k, factors = 1, (2, 2.5, 2)
    i = 0
    while math.ceil(n / k) > most:
        k = int(k * factors[i % 3])
        i += 1
    return k


def _fmt(value: float, step: float) -> str:
    """A tick label with as many decimals as the step needs (2.5 -> one, 0.02 -> two)."""
    text = f"{step:.6g}"
    decimals = len(text.split(".")[1]) if "." in text and "e" not in text else 0
    return f"{value:.{decimals}f}"


def trend_svg(points: list[Point], title: str, y_label: str, floor: float | None = None,
              ceiling: float | None = None, running_best: bool = False, chart_id: str = "",
              include: float | None = None) -> Markup:
    """An SVG chart of ``points`` (run 1 first): dots with error bars, a faint line joining them and,
    with ``running_best``, a dashed line of the highest value so far; the y axis as :func:`y_range`
    (``include``: a value the axis always shows, such as 0 s). Empty without points."""
    if not points:
        return Markup("")
    n = len(points)
    bottom, top, step = y_range(points, floor, ceiling, include)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:  # run i (0-based) at the middle of its slot
        return LEFT + (i + 0.5) * plot_w / n

    def y(v: float) -> float:
        return TOP + (top - v) / (top - bottom) * plot_h

    parts = [f'<svg class="trend" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>"]
    ticks = int(round((top - bottom) / step))
    for t in range(ticks + 1):
        v = bottom + t * step
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
                     f'<text class="tick" x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{_fmt(v, step)}</text>')
    every = x_label_step(n)
    for i in range(0, n, every):
        parts.append(f'<text class="tick" x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" '
                     f'text-anchor="middle">{i + 1}</text>')
    parts.append(f'<text class="axis" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle">run '
                 f'(1 = oldest)</text>')
    parts.append(f'<text class="axis" transform="translate(13 {TOP + plot_h / 2:.1f}) rotate(-90)" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    if n > 1:
        line = " ".join(f"{x(i):.1f},{y(p.value):.1f}" for i, p in enumerate(points))
        parts.append(f'<polyline class="joint" points="{line}"/>')
    if running_best and n > 1:
        best, steps = -math.inf, []
        for i, p in enumerate(points):
            best = max(best, p.value)
            steps.append(f"{x(i) - plot_w / n / 2:.1f},{y(best):.1f} {x(i) + plot_w / n / 2:.1f},{y(best):.1f}")
        parts.append(f'<polyline class="best" points="{" ".join(steps)}"/>')
    radius = 4 if n <= 60 else 2.5
    for i, p in enumerate(points):
        bar = ""
        if p.low is not None and p.high is not None:
            cap = min(5.0, plot_w / n / 3)
            bar = (f'<line class="bar" x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{y(p.low):.1f}" y2="{y(p.high):.1f}"/>'
                   + "".join(f'<line class="bar" x1="{x(i) - cap:.1f}" x2="{x(i) + cap:.1f}" y1="{y(v):.1f}" '
                             f'y2="{y(v):.1f}"/>' for v in (p.low, p.high)))
        dot = f'<circle class="dot" cx="{x(i):.1f}" cy="{y(p.value):.1f}" r="{radius}"/>'
        body = f"<title>{escape(p.tooltip)}</title>{bar}{dot}"
        parts.append(f'<a href="{escape(p.href)}">{body}</a>' if p.href else f"<g>{body}</g>")
    parts.append("</svg>")
    return Markup("".join(parts))
