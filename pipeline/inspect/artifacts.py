"""Open any file the pipeline wrote, verified before a byte of it is parsed; refuse anything else.

What is opened, and what vouches for it::

    <output dir>/<name>.pkl|.json|.txt|.png|.html   its sha256 in the directory's manifest.json
                                                    (pickles then go through the restricted unpickler)
    <output dir>/manifest.json, raw/<name>/manifest.json   itself: a record, parsed as JSON only
    raw/ or mirror/ <MNIST file>.gz                  the pinned sha256 of MNIST's decompressed content
    report_dir/history.csv, index.html               nothing (the run index has no manifest): parsed
                                                     as CSV / read as text, never unpickled
    an output directory                              its manifest, every file rehashed

A pickle no manifest vouches for is never loaded: :class:`pipeline.store.IntegrityError`.
"""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.inspect.errors import NotFound
from pipeline.inspect.integrity import SUMS_FILE, read_fetch_manifest, verify_output
from pipeline.report.files import HISTORY_FILE, INDEX_FILE
from pipeline.store.manifest import MANIFEST_FILE, IntegrityError, read_manifest

UNVERIFIED_INDEX = (HISTORY_FILE, INDEX_FILE)

# kinds of artifact: how `show` prints it
DATA, JSON, TEXT = "data", "json", "text"


@dataclass
class Artifact:
    """A file's content, loaded: ``kind`` DATA (describe it), JSON (print it) or TEXT (print it)."""

    path: Path
    kind: str
    obj: Any
    check: str  # how the content was vouched for, in words


def _png_info(data: bytes) -> dict[str, Any]:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return {"format": "not a PNG", "bytes": len(data)}
    width, height = struct.unpack(">II", data[16:24])
    return {"format": "PNG", "width": width, "height": height, "bytes": len(data)}


def _html_info(data: bytes) -> dict[str, Any]:
    title = re.search(rb"<title>(.*?)</title>", data, re.S | re.I)
    return {"format": "HTML", "bytes": len(data),
            "title": title.group(1).decode("utf-8", "replace").strip() if title else None}


def _directory(path: Path) -> Artifact:
    manifest = read_manifest(path)
    problems = verify_output(path, manifest)
    obj = {"task": manifest.get("task"), "task_id": manifest.get("task_id"), "created": manifest.get("created"),
           "params": manifest.get("params"), "code_digest": (manifest.get("code") or {}).get("digest"),
           "files": {name: rec.get("bytes") for name, rec in manifest["files"].items()},
           "integrity": problems or "ok"}
    return Artifact(path, JSON, obj, f"every file rehashed against {path / MANIFEST_FILE}")


def _idx(path: Path) -> Artifact:
    from pipeline.acquire.files import BY_NAME
    from pipeline.acquire.idx import IdxError, parse_idx, read_bytes

    expected = BY_NAME.get(path.name)
    if expected is None:
        raise IntegrityError(f"{path} is not one of the MNIST files, so no pinned checksum vouches for it; "
                             "it is not opened")
    try:
        raw = read_bytes(path, expected.sha256)
    except IdxError as exc:
        raise IntegrityError(str(exc)) from None
    return Artifact(path, DATA, parse_idx(raw, path.name), "verified against the pinned sha256 of MNIST's content")


def _manifest_file(path: Path) -> Artifact:
    import json

    if read_fetch_manifest(path.parent) is not None:
        return Artifact(path, JSON, json.loads(path.read_text(encoding="utf-8")),
                        "the download's own manifest: a record itself, parsed as JSON only")
    manifest = read_manifest(path.parent)  # raises IntegrityError when it is not ours
    return Artifact(path, JSON, manifest, "an integrity manifest: the record the other files are checked "
                                          "against, parsed as JSON only")


def _index_file(path: Path) -> Artifact:
    check = "the run index has no manifest (every run rewrites it): read as data, nothing executed"
    if path.suffix == ".csv":
        import pandas as pd

        return Artifact(path, DATA, pd.read_csv(path), check)
    return Artifact(path, JSON, _html_info(path.read_bytes()), check)


def _verified_file(path: Path) -> Artifact:
    from pipeline.store.manifest import read_verified_json, read_verified_pickle, verified_bytes

    by = f"verified against {path.parent / MANIFEST_FILE}"
    suffix = path.suffix.lower()
    if suffix == ".pkl":
        return Artifact(path, DATA, read_verified_pickle(path), by)
    if suffix == ".json":
        return Artifact(path, JSON, read_verified_json(path), by)
    data = verified_bytes(path)
    if suffix == ".png":
        return Artifact(path, JSON, _png_info(data), by)
    if suffix in (".html", ".htm"):
        return Artifact(path, JSON, _html_info(data), by)
    return Artifact(path, TEXT, data.decode("utf-8", "replace"), by)


def open_artifact(path: str | os.PathLike, report_dir: str | os.PathLike | None = None) -> Artifact:
    """Load ``path`` after checking it against what vouches for it (see the module docstring).

    Raises :class:`NotFound` for a path that does not exist and
    :class:`pipeline.store.IntegrityError` for a file that fails or has no check.
    """
    path = Path(path)
    if not path.exists():
        raise NotFound(f"{path} does not exist")
    if path.is_dir():
        if not (path / MANIFEST_FILE).exists():
            raise NotFound(f"{path} is a directory without {MANIFEST_FILE}: not an output of this pipeline; "
                           "give a file, or an output directory (see `mnist-pipeline ls`)")
        if read_fetch_manifest(path) is not None:
            return _manifest_file(path / MANIFEST_FILE)
        return _directory(path)
    if path.name == MANIFEST_FILE:
        return _manifest_file(path)
    if path.name.endswith(".gz") and (read_fetch_manifest(path.parent) is not None
                                      or (path.parent / SUMS_FILE).exists()):
        return _idx(path)
    if path.name in UNVERIFIED_INDEX and report_dir is not None and path.parent.resolve() == Path(report_dir).resolve():
        return _index_file(path)
    if path.name == SUMS_FILE:
        return Artifact(path, TEXT, path.read_text(encoding="utf-8"), "a checksum list: a record itself")
    if not (path.parent / MANIFEST_FILE).exists():
        raise IntegrityError(f"{path} is not in an output directory of this pipeline (there is no {MANIFEST_FILE} "
                             "beside it), so nothing vouches for its content and it is not opened; show only "
                             "files the pipeline wrote (`mnist-pipeline ls` lists them)")
    return _verified_file(path)
