"""The nightly page: the night's verdict, its comparison with the previous night, mirror health."""
from __future__ import annotations

from typing import Any


def render_night(record: dict[str, Any]) -> str:
    """``nightly.html`` of one night (self-contained; links to that night's copy of the run report)."""
    from pipeline.report.render import render

    return render("nightly.html.j2", night=record)
