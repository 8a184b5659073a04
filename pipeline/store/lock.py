"""One inter-process lock: ``flock`` on a hidden file, waited for with a timeout.

The kernel releases an ``flock`` when its holder dies, so a killed run never leaves a lock
that blocks the next one; the small lock file itself stays (removing it would race with a
run that has just opened it).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Callable, Iterator


class LockTimeout(RuntimeError):
    """Another process held the lock for longer than the caller was willing to wait."""


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, timeout: float, on_wait: Callable[[float], None] | None = None,
              poll: float = 0.5, report_every: float = 10.0) -> Iterator[float]:
    """Hold an exclusive lock on ``path`` for the block; wait up to ``timeout`` seconds for it.
    Yields the seconds waited (0.0 when the lock was free).

    While waiting, ``on_wait(seconds_waited)`` is called at once and then every ``report_every``
    seconds (a long wait says so without filling the log).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        start = time.monotonic()
        reported = -float("inf")
        contended = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                contended = True
                waited = time.monotonic() - start
                if waited >= timeout:
                    raise LockTimeout(f"{path} has been held by another process for over {timeout:g} s") from None
                if on_wait is not None and waited - reported >= report_every:
                    reported = waited
                    on_wait(waited)
                time.sleep(poll)
        try:
            yield time.monotonic() - start if contended else 0.0
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
