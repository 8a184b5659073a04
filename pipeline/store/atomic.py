"""Atomic writes: nothing is ever written straight to its final path.

Bytes go to a temporary file in the same directory, are flushed to disk, and
are renamed into place (``os.replace`` is atomic on POSIX). A whole output
directory is built under a staging name and swapped in the same way, so a
crash leaves either the old result or the new one, never a mixture.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from pipeline.store.debris import owner_tag


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; results are meant to be shared like any other file.
FILE_MODE = 0o666 & ~_umask()
DIR_MODE = 0o777 & ~_umask()


class StorageFullError(OSError):
    """The filesystem under the data or report directory has no room (or quota) left."""


def _full(exc: OSError, path: Path) -> OSError:
    """``exc`` restated as a :class:`StorageFullError` that names the path and the fix, when it is one."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return exc
    return StorageFullError(exc.errno, f"no space left on the device while writing {path} ({exc.strerror}); "
                                       "nothing was replaced. Free space there, or point data_dir/report_dir "
                                       "([storage] in luigi.cfg) at a larger disk, and rerun")


def fsync_dir(directory: str | os.PathLike) -> None:
    """Persist a rename: on POSIX the directory entry must be synced too."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it into place on success.

    On an exception the temporary file is removed and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}{owner_tag()}", suffix=".tmp", dir=final.parent)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, final)
        fsync_dir(final.parent)
    except OSError as exc:
        raise _full(exc, final) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging directory; swap it in as ``final`` on success.

    Files are written into the staging directory (each may itself be written
    atomically); when the block ends without an exception the directory
    replaces ``final``. An old ``final`` is moved aside first and removed only
    after the new one is in place, so a crash never leaves a half-built result
    at the final path. On an exception the staging directory is removed; after a
    kill it is left, named after its owner, for :func:`pipeline.store.debris.sweep`.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}{owner_tag()}", suffix=".staging", dir=final.parent))
    os.chmod(staging, DIR_MODE)
    try:
        yield staging
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}{owner_tag()}", suffix=".old", dir=final.parent))
            os.rmdir(old)
            os.rename(final, old)
        os.rename(staging, final)
        fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
