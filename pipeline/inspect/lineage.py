"""What an output was made from, as its manifests recorded it when it was written.

Every manifest lists its inputs, ``{task id: {"path": <input's completion file>,
"sha256": ...}}``. Following them from a run's report gives every output directory
the run used, whatever the code of today would name them (a parameter added since
changes the names a rebuilt task tree gives, never what a run recorded). Recorded
paths are re-rooted under the current data directory by their last two parts,
``<stage>/<name>``, so a data directory that was moved or copied is followed too.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.store.manifest import IntegrityError, read_manifest


@dataclass(frozen=True)
class Input:
    """An output directory a run used: the task that made it (when its manifest says) and the sha256
    of its completion file when the output that used it was written."""

    directory: Path
    task: str
    recorded_sha256: str


def relocate(recorded: str | os.PathLike, data_dir: str | os.PathLike) -> Path:
    """The directory of a recorded completion file (``.../<stage>/<name>/<file>``) under ``data_dir``."""
    recorded_dir = Path(recorded).parent
    return Path(data_dir) / recorded_dir.parent.name / recorded_dir.name


def lineage(directory: str | os.PathLike, data_dir: str | os.PathLike) -> list[Input]:
    """Every output ``directory`` was made from, transitively, nearest first (each once)."""
    found: dict[Path, Input] = {}
    todo = [Path(directory)]
    while todo:
        current = todo.pop(0)
        try:
            inputs = read_manifest(current).get("inputs") or {}
        except IntegrityError:
            continue  # the download has its own manifest and no inputs; a damaged one ends the trail
        for task_id, record in sorted(inputs.items()):
            if not isinstance(record, dict) or "path" not in record:
                continue
            where = relocate(record["path"], data_dir)
            if where in found:
                continue
            try:
                task = read_manifest(where).get("task", "")
            except IntegrityError:
                task = ""
            found[where] = Input(where, task or task_id.split("_")[0], record.get("sha256", ""))
            todo.append(where)
    return list(found.values())


def nearest_holding(inputs: list[Input], file_name: str) -> Input | None:
    """The first of ``inputs`` (nearest first, as :func:`lineage` lists them) whose manifest verifies
    and lists ``file_name``; None when none does."""
    for item in inputs:
        try:
            if file_name in read_manifest(item.directory)["files"]:
                return item
        except IntegrityError:
            continue
    return None
