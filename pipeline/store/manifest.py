"""Integrity manifests: every file of an output directory with its sha256, and verified loads.

A task's output directory ends with ``manifest.json``, written last and
atomically: the sha256 and size of every other file in it, plus what the task
records about how the files were made (its code digest, parameters, inputs and
provenance). Nothing is unpickled before its bytes match the manifest, and the
bytes that are checked are the very bytes that are unpickled (read once), so a
file swapped between the check and the load cannot slip through.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

from pipeline.store.formats import write_json
from pipeline.store.safe_pickle import ForbiddenPickleError, loads

MANIFEST_FILE = "manifest.json"
FORMAT = "mnist-pipeline-manifest/1"


class IntegrityError(RuntimeError):
    """An artifact does not match its manifest, or the manifest is missing or unreadable."""


def _fix(directory: Path) -> str:
    return f"delete {directory} and rerun: the pipeline rebuilds it"


def listed_files(directory: str | os.PathLike) -> list[Path]:
    """The files a manifest covers: every regular, non-hidden file in ``directory`` but the manifest."""
    directory = Path(directory)
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name != MANIFEST_FILE)


def file_record(path: Path) -> dict[str, Any]:
    """{"sha256", "bytes"} of one file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return {"sha256": digest.hexdigest(), "bytes": size}


def write_manifest(directory: str | os.PathLike, record: dict[str, Any] | None = None) -> Path:
    """Hash every file in ``directory`` and write ``manifest.json`` (last, atomically); return its path."""
    directory = Path(directory)
    files = {p.name: file_record(p) for p in listed_files(directory)}
    path = directory / MANIFEST_FILE
    write_json(path, {**(record or {}), "format": FORMAT, "files": files})
    return path


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """The manifest of ``directory``; :class:`IntegrityError` when it is missing or unreadable."""
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IntegrityError(f"{path} is missing, so nothing in {directory} can be verified; "
                             f"{_fix(directory)}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{path} does not parse ({exc}); {_fix(directory)}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(
            manifest.get("files"), dict):
        raise IntegrityError(f"{path} is not a manifest of this pipeline (format {FORMAT}); {_fix(directory)}")
    return manifest


def missing_files(directory: str | os.PathLike, manifest: dict[str, Any]) -> list[str]:
    """Names the manifest lists that are not in ``directory`` (an output someone partly deleted)."""
    directory = Path(directory)
    return sorted(name for name in manifest["files"] if not (directory / name).is_file())


def listing_problems(directory: str | os.PathLike, manifest: dict[str, Any] | None = None) -> list[str]:
    """Cheap checks, no hashing: files the manifest lists that are missing or of another size."""
    directory = Path(directory)
    manifest = manifest if manifest is not None else read_manifest(directory)
    problems = []
    for name, rec in manifest["files"].items():
        try:
            size = (directory / name).stat().st_size
        except OSError:
            problems.append(f"{name} is listed in the manifest but missing")
            continue
        if size != rec.get("bytes"):
            problems.append(f"{name} has {size} bytes, the manifest says {rec.get('bytes')}")
    return problems


def verified_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``, read once and checked against its directory's manifest."""
    path = Path(path)
    manifest = read_manifest(path.parent)
    record = manifest["files"].get(path.name)
    if record is None:
        raise IntegrityError(f"{path} is not listed in {path.parent / MANIFEST_FILE}, so it was not written "
                             f"by this pipeline's task; {_fix(path.parent)}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(f"{path} is listed in the manifest but missing; {_fix(path.parent)}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != record["sha256"]:
        raise IntegrityError(f"{path} was changed after it was written: sha256 {actual}, the manifest says "
                             f"{record['sha256']}. It is not loaded; {_fix(path.parent)}")
    return data


def read_verified_pickle(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` after checking its sha256, with the restricted unpickler (plain data only)."""
    data = verified_bytes(path)
    try:
        return loads(data)
    except ForbiddenPickleError as exc:
        raise IntegrityError(f"{path} holds more than plain data ({exc}); it is not loaded; "
                             f"{_fix(Path(path).parent)}") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise IntegrityError(f"{path} is not a complete pickle ({type(exc).__name__}: {exc}); "
                             f"{_fix(Path(path).parent)}") from None


def read_verified_json(path: str | os.PathLike) -> Any:
    """Parse ``path`` as JSON after checking its sha256 against the manifest."""
    data = verified_bytes(path)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(f"{path} does not parse as JSON ({exc}); {_fix(Path(path).parent)}") from None


def read_verified(path: str | os.PathLike) -> Any:
    """A JSON or pickle artifact, verified: the one way any stored result is loaded."""
    return read_verified_json(path) if str(path).endswith(".json") else read_verified_pickle(path)
