"""Everything under the data and report directories, one :class:`Entry` each, with its integrity.

Layout read here (written by the pipeline)::

    data_dir/mirror/<name>/           the bundled copy, checked against its SHA256SUMS
    data_dir/raw/<name>/              the download, checked against its own manifest.json
    data_dir/<stage>/<slug>/          a task's output, sealed by an integrity manifest
    data_dir/<stage>/<slug>.checkpoints/   training checkpoints of an unfinished run
    data_dir/<stage>/.<name>~<host>~<pid>~....{tmp,staging,old}   debris of a killed process
    report_dir/<run id>/              a run's report (an output too: report.html, metrics.json)
    report_dir/{index.html, history.csv, latest}   the run index

Anything else is listed as ``other`` and never judged.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.inspect.integrity import read_fetch_manifest, read_sums, verify_fetched, verify_output, verify_sums
from pipeline.report.files import HISTORY_FILE, INDEX_FILE, LATEST_LINK
from pipeline.store.manifest import FORMAT, MANIFEST_FILE

MIRROR_STAGE = "mirror"
RAW_STAGE = "raw"
CHECKPOINTS_SUFFIX = ".checkpoints"
DEBRIS_SUFFIXES = (".tmp", ".staging", ".old")
INDEX_NAMES = (INDEX_FILE, HISTORY_FILE, LATEST_LINK)

# kinds of entry
OUTPUT, REPORT, RAW, MIRROR, CHECKPOINTS, DEBRIS, INDEX, OTHER = (
    "output", "report", "raw", "mirror", "checkpoints", "debris", "index", "other")


@dataclass
class Entry:
    """One thing on disk: what it is, where, made by which task with which parameters, how big, intact or not.

    ``problems`` is None when integrity was not checked (nothing to check it against),
    [] when every file matched, else one sentence per failing file.
    """

    kind: str
    stage: str
    path: Path
    task: str = ""
    params: dict[str, str] = field(default_factory=dict)
    created: str = ""
    bytes: int = 0
    problems: list[str] | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def integrity(self) -> str:
        """``ok``, ``FAILED`` or ``-`` (not checked)."""
        return "-" if self.problems is None else ("ok" if not self.problems else "FAILED")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path), "integrity": self.integrity()}


def disk_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a directory (symlinks are not followed)."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        total += sum((Path(root) / f).lstat().st_size for f in files)
    return total


def is_debris(path: Path) -> bool:
    """Is ``path`` a temporary name of the store (hidden, ending in .tmp, .staging or .old)?"""
    return path.name.startswith(".") and path.name.endswith(DEBRIS_SUFFIXES)


def _debris(path: Path, stage: str) -> Entry:
    from pipeline.store.debris import is_orphan

    note = ("left by a process that no longer runs: safe to remove" if is_orphan(path)
            else "work in progress of a running process (or too recent to judge)")
    return Entry(DEBRIS, stage, path, bytes=disk_bytes(path), note=note)


def _manifest(directory: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None


def describe_dir(directory: Path, stage: str, kind: str = OUTPUT, verify: bool = True) -> Entry:
    """An output (or report, or checkpoints) directory as an entry, rehashed when ``verify``."""
    manifest = _manifest(directory)
    size = disk_bytes(directory)
    if manifest is None:
        has = (directory / MANIFEST_FILE).exists()
        why = f"{MANIFEST_FILE} is not an integrity manifest" if has else f"no {MANIFEST_FILE}"
        return Entry(OTHER, stage, directory, bytes=size, problems=[why] if verify else None,
                     note="not a finished output of this pipeline")
    if directory.name.endswith(CHECKPOINTS_SUFFIX):
        kind, note = CHECKPOINTS, "checkpoints of an unfinished training run (resumed from on the next run)"
    else:
        note = ""
    return Entry(kind, stage, directory, task=manifest.get("task", ""), params=manifest.get("params") or {},
                 created=manifest.get("created", ""), bytes=size,
                 problems=verify_output(directory, manifest) if verify else None, note=note)


def scan_data(data_dir: str | os.PathLike, verify: bool = True) -> list[Entry]:
    """Every entry two levels under ``data_dir`` (``<stage>/<name>``), sorted by stage and name."""
    data_dir = Path(data_dir)
    entries = []
    for stage_dir in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        stage = stage_dir.name
        for path in sorted(stage_dir.iterdir()):
            if is_debris(path):
                entries.append(_debris(path, stage))
            elif path.name.startswith(".") or not path.is_dir():
                continue  # locks and other hidden bookkeeping
            elif stage == MIRROR_STAGE and read_sums(path) is not None:
                entries.append(Entry(MIRROR, stage, path, task="(bundled copy)", bytes=disk_bytes(path),
                                     problems=verify_sums(path) if verify else None,
                                     note="tracked in the repository; never removed"))
            elif stage == RAW_STAGE or read_fetch_manifest(path) is not None:
                created = ""
                if (path / MANIFEST_FILE).exists():
                    mtime = (path / MANIFEST_FILE).stat().st_mtime
                    created = dt.datetime.fromtimestamp(mtime, dt.timezone.utc).isoformat(timespec="seconds")
                entries.append(Entry(RAW, stage, path, task="FetchMNIST", created=created, bytes=disk_bytes(path),
                                     problems=verify_fetched(path) if verify else None,
                                     note="the download; never removed"))
            else:
                entries.append(describe_dir(path, stage, OUTPUT, verify))
    return entries


def scan_reports(report_dir: str | os.PathLike, verify: bool = True) -> list[Entry]:
    """Every run's report directory under ``report_dir``, then the run index files."""
    report_dir = Path(report_dir)
    entries, index = [], []
    for path in sorted(report_dir.iterdir()):
        if is_debris(path):
            entries.append(_debris(path, "reports"))
        elif path.name in INDEX_NAMES:
            index.append(path)
        elif path.is_dir() and not path.is_symlink() and not path.name.startswith("."):
            entries.append(describe_dir(path, "reports", REPORT, verify))
    if index:
        latest = report_dir / LATEST_LINK
        target = os.readlink(latest) if latest.is_symlink() else ""
        note = ", ".join(p.name for p in index) + (f"; {LATEST_LINK} -> {target}" if target else "")
        entries.append(Entry(INDEX, "reports", report_dir, task="(run index)",
                             bytes=sum(disk_bytes(p) for p in index), note=note))
    return entries


def scan(data_dir: str | os.PathLike, report_dir: str | os.PathLike | None, verify: bool = True) -> list[Entry]:
    """Entries of the data directory, then of the report directory (when it exists)."""
    entries = scan_data(data_dir, verify)
    if report_dir is not None and Path(report_dir).is_dir():
        entries += scan_reports(report_dir, verify)
    return entries


def sort_entries(entries: list[Entry], stage_order: list[str]) -> list[Entry]:
    """Entries in pipeline order of their stage (``stage_order``; other stages after it, by name), then by name.

    The download and the bundled copy come first, the reports last."""
    order = [MIRROR_STAGE, RAW_STAGE] + [s for s in stage_order if s not in (MIRROR_STAGE, RAW_STAGE)]

    def key(e: Entry) -> tuple:
        rank = order.index(e.stage) if e.stage in order else len(order) + (e.kind in (REPORT, INDEX))
        return (rank, e.stage, e.kind == INDEX, e.path.name)

    return sorted(entries, key=key)


def key_params(params: dict[str, str], defaults: dict[str, str] | None) -> dict[str, str]:
    """The parameters that differ from the task's defaults (all of them when the defaults are unknown)."""
    if defaults is None:
        return dict(params)
    return {k: v for k, v in params.items() if defaults.get(k) != v}
