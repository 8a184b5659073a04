"""Rehash what is on disk against the record written with it, and say which file fails and how.

Three kinds of record: an output directory's integrity manifest (``manifest.json``,
format ``mnist-pipeline-manifest/1``: every file's sha256 and size), the raw
download's own ``manifest.json`` ({file: {"sha256_gz", "bytes", ...}}), and the
bundled mirror's ``SHA256SUMS`` (``<sha256>  <file>`` lines). Every function
returns a list of problems in words; an empty list means every byte checks out.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pipeline.store.manifest import MANIFEST_FILE, IntegrityError, file_record, listed_files, read_manifest

SUMS_FILE = "SHA256SUMS"


def _compare(directory: Path, name: str, sha256: str | None, size: int | None) -> str | None:
    path = directory / name
    if not path.is_file():
        return f"{name} is listed but missing"
    if size is not None and path.stat().st_size != size:
        return f"{name} has {path.stat().st_size:,} bytes, the record says {size:,}"
    actual = file_record(path)["sha256"]
    if sha256 is not None and actual != sha256:
        return f"{name} changed after it was written (sha256 {actual[:16]}..., the record says {sha256[:16]}...)"
    return None


def verify_output(directory: str | os.PathLike, manifest: dict[str, Any] | None = None) -> list[str]:
    """Problems of an output directory against its integrity manifest: missing, resized, changed or extra files."""
    directory = Path(directory)
    try:
        manifest = manifest if manifest is not None else read_manifest(directory)
    except IntegrityError as exc:
        return [str(exc)]
    problems = [p for name, rec in sorted(manifest["files"].items())
                if (p := _compare(directory, name, rec.get("sha256"), rec.get("bytes")))]
    extra = [p.name for p in listed_files(directory) if p.name not in manifest["files"]]
    problems += [f"{name} is not listed in {MANIFEST_FILE}: it was added after the output was written"
                 for name in extra]
    return problems


def read_fetch_manifest(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The raw download's manifest {file: {"sha256_gz", "bytes", ...}}, or None when ``directory`` has none."""
    try:
        manifest = json.loads((Path(directory) / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or "format" in manifest or not manifest or not all(
            isinstance(rec, dict) and "sha256_gz" in rec for rec in manifest.values()):
        return None
    return manifest


def verify_fetched(directory: str | os.PathLike) -> list[str]:
    """Problems of the raw download: each ``.gz`` against the sha256 recorded when it was fetched."""
    directory = Path(directory)
    manifest = read_fetch_manifest(directory)
    if manifest is None:
        return [f"{directory / MANIFEST_FILE} is missing or is not the download's manifest; rerun the pipeline, "
                "it fetches the files again"]
    return [p for name, rec in sorted(manifest.items())
            if (p := _compare(directory, name, rec.get("sha256_gz"), rec.get("bytes")))]


def read_sums(directory: str | os.PathLike) -> dict[str, str] | None:
    """{file: sha256} from ``directory/SHA256SUMS``, or None when there is none."""
    try:
        text = (Path(directory) / SUMS_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    sums = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def verify_sums(directory: str | os.PathLike) -> list[str]:
    """Problems of a directory with a ``SHA256SUMS`` file (the bundled mirror): each file against its line."""
    directory = Path(directory)
    sums = read_sums(directory)
    if sums is None:
        return [f"{directory / SUMS_FILE} is missing or unreadable"]
    return [p for name, sha in sorted(sums.items()) if (p := _compare(directory, name, sha, None))]
