"""Atomic writes and safe loads for every artifact the pipeline produces.

Nothing is ever written straight to its final path: bytes go to a temporary
file in the same directory, are flushed to disk, and are renamed into place
(``os.replace`` is atomic on POSIX). A whole output directory is built under a
staging name and swapped in the same way, so a crash leaves either the old
result or the new one, never a mixture.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

PICKLE_PROTOCOL = 4  # readable by every Python >= 3.4


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; results are meant to be shared like any other file.
FILE_MODE = 0o666 & ~_umask()


def fsync_dir(directory: Path) -> None:
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
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, final)
        fsync_dir(final.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n"
    write_bytes(path, text.encode("utf-8"))


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_pickle(path: str | os.PathLike, obj: Any) -> None:
    """Pickle ``obj`` to ``path`` atomically (protocol 4, plain containers preferred)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            pickle.dump(obj, fh, protocol=PICKLE_PROTOCOL)


def read_pickle(path: str | os.PathLike) -> Any:
    """Load a pickle this pipeline wrote. Only open pickles you trust."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except (EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(
            f"{path} is not a complete pickle ({exc}); delete it and rerun the task that makes it"
        ) from exc


def to_jsonable(obj: Any) -> Any:
    """Convert NumPy scalars/arrays and Paths inside ``obj`` to plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so memory stays bounded."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_arrays(arrays: dict[str, np.ndarray]) -> str:
    """Hex sha256 over named arrays (name, dtype, shape and bytes), order-independent."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        digest.update(name.encode())
        digest.update(str(arr.dtype).encode())
        digest.update(str(arr.shape).encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging directory; swap it in as ``final`` on success.

    Files are written into the staging directory (each may itself be written
    atomically); when the block ends without an exception the directory
    replaces ``final``. An old ``final`` is moved aside first and removed only
    after the new one is in place, so a crash never leaves a half-built result
    at the final path. On an exception the staging directory is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".staging", dir=final.parent))
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.rmdir(old)
            os.rename(final, old)
        os.rename(staging, final)
        fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
