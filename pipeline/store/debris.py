"""Debris of killed processes: temporary files and staging directories that no live process owns.

Every temporary name this package makes carries its owner, ``~<host>~<pid>~``
(see :func:`owner_tag`). A later run removes such an entry once that process is
gone: on this host when the pid is dead or has been reused by a younger
process, and for another host's entries (a shared data directory) only once
they are a day old, since their process cannot be asked. Work in progress of a
live process, here or elsewhere, is never touched.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import time
from pathlib import Path

log = logging.getLogger(__name__)

FOREIGN_HOST_AGE = 24 * 3600.0  # seconds before another host's debris is taken for dead
_TAG = re.compile(r"^\..*~(?P<host>[^~/]+)~(?P<pid>\d+)~.*\.(tmp|staging|old)$")


def _host() -> str:
    return socket.gethostname().replace("~", "-") or "localhost"


def owner_tag() -> str:
    """``~<host>~<pid>~``: put into every temporary name so its owner can be checked later."""
    return f"~{_host()}~{os.getpid()}~"


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from /proc; None where there is no /proc.

    ``/proc/<pid>/stat`` field 22 counts clock ticks since boot; ``/proc/stat``'s btime is the boot.
    (The ctime of ``/proc/<pid>`` is when that entry was first looked at, not the process start.)
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])  # fields after "(comm)": state is field 3, starttime 22
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _alive(pid: int, since: float) -> bool:
    """Is process ``pid`` alive, and the same process that was there at time ``since``?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = process_start(pid)
    if started is None:
        return True  # no /proc: trust the pid
    return started <= since + 1.0  # a process younger than the debris reuses the pid


def is_orphan(path: Path, now: float | None = None) -> bool:
    """Is ``path`` a temporary entry of ours whose owning process is gone?"""
    match = _TAG.match(path.name)
    if match is None:
        return False
    try:
        mtime = path.lstat().st_mtime
    except FileNotFoundError:
        return False
    if match["host"] != _host():
        return (now if now is not None else time.time()) - mtime > FOREIGN_HOST_AGE
    return not _alive(int(match["pid"]), mtime)


def sweep(directory: str | os.PathLike) -> list[Path]:
    """Remove the orphaned temporary entries directly inside ``directory``; return what was removed."""
    directory = Path(directory)
    removed = []
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return removed
    for path in entries:
        if not is_orphan(path):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
        log.info("removed %s, left behind by a process that no longer runs", path)
    return removed
