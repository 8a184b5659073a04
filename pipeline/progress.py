"""Progress is a plain callback ``progress(fraction, message)``; the pipeline only calls it.

Stages report through it and never print: the task layer decides where it goes
(the Luigi scheduler's web page and the terminal line, both from one call).
"""
from __future__ import annotations

import math
import time
from typing import Callable

ProgressFn = Callable[[float, str], None]


def ignore(fraction: float, message: str) -> None:
    """The progress callback that goes nowhere (the default of every stage)."""


def throttled(progress: ProgressFn, interval: float) -> Callable[..., None]:
    """``progress`` called at most every ``interval`` seconds; ``force=True`` always passes."""
    last = -math.inf

    def report(fraction: float, message: str, force: bool = False) -> None:
        nonlocal last
        now = time.monotonic()
        if force or now - last >= interval:
            last = now
            progress(fraction, message)

    return report


def format_seconds(seconds: float) -> str:
    """``75`` -> ``"1m15s"``: durations in progress messages."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
