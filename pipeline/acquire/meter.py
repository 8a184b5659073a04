"""Transfer progress: bytes done, total and rate of one transfer, reported through a callback.

Nothing here prints or throttles. A download calls its meter for every chunk;
the callback decides what the numbers become (``fetch`` turns them into the
stage's ``progress(fraction, message)``, which the task layer shows).
"""
from __future__ import annotations

import time
from typing import Callable

ByteProgress = Callable[[int, int | None, float | None], None]  # (bytes done, total or None, bytes/s or None)

MIN_RATE_SECONDS = 0.25  # a rate measured over the first chunk or two says nothing; report none before this


class Meter:
    """Passes ``(done, total, bytes/s)`` to ``report`` on every call; the rate counts this attempt's bytes only."""

    def __init__(self, report: ByteProgress | None = None) -> None:
        self.report = report
        self.begin(0)

    def begin(self, offset: int) -> None:
        """(Re)start the clock at byte ``offset``: a resumed transfer's rate counts only new bytes."""
        self.start = time.monotonic()
        self.start_bytes = offset

    def rate(self, done: int) -> float | None:
        """Bytes per second since :meth:`begin`, or None while too little time has passed to say."""
        elapsed = time.monotonic() - self.start
        return (done - self.start_bytes) / elapsed if elapsed >= MIN_RATE_SECONDS else None

    def __call__(self, done: int, total: int | None) -> None:
        if self.report is not None:
            self.report(done, total, self.rate(done))


def fraction(done: int, total: int | None) -> float:
    """The share of a transfer done, in [0, 1]; 0 while the total is unknown."""
    return min(done / total, 1.0) if total else 0.0


def format_progress(label: str, done: int, total: int | None, rate: float | None) -> str:
    """``label  3.1 of 9.9 MB (31%)  1.2 MB/s`` (no rate while none is known, no total while none is known)."""
    unit, scale = ("MB", 1e6) if (total or done) >= 1e6 else ("kB", 1e3)
    speed = f"  {rate / 1e6:.2f} MB/s" if rate is not None else ""
    if total:
        return f"{label}  {done / scale:.1f} of {total / scale:.1f} {unit} ({100 * done / total:.0f}%){speed}"
    return f"{label}  {done / scale:.1f} {unit}{speed}"
