"""Garbage collection: which entries no kept run uses, how many bytes they hold, and their removal.

The caller says which output directories the kept runs use (every task in each
run's tree). The plan then removes: outputs no kept run uses, checkpoints beside
such outputs, debris of dead processes, and (only when asked) the reports of runs
that are not kept. It never removes the download (``raw/``), the bundled copy
(``mirror/``), the run index, anything it does not recognise, or work of a live
process. A removal first renames the directory to a debris name (one atomic
step), so a gc killed half-way leaves debris the next run sweeps, never a
half-deleted output that looks finished.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.inspect.outputs import (CHECKPOINTS, CHECKPOINTS_SUFFIX, DEBRIS, INDEX, MIRROR, MIRROR_STAGE, OTHER,
                                      OUTPUT, RAW, RAW_STAGE, REPORT, Entry)

NEVER = (MIRROR_STAGE, RAW_STAGE)  # first-level folders of the data directory gc never touches


@dataclass
class Decision:
    """One entry and what gc does with it, and why."""

    entry: Entry
    remove: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.entry.to_dict(), "remove": self.remove, "why": self.why}


@dataclass
class Plan:
    """Every entry with its decision; ``bytes`` is what removing the ``remove`` ones frees."""

    decisions: list[Decision] = field(default_factory=list)
    kept_runs: list[str] = field(default_factory=list)

    @property
    def removals(self) -> list[Decision]:
        return [d for d in self.decisions if d.remove]

    @property
    def bytes(self) -> int:
        return sum(d.entry.bytes for d in self.removals)

    def to_dict(self) -> dict[str, Any]:
        return {"kept_runs": self.kept_runs, "bytes": self.bytes, "remove": [d.to_dict() for d in self.removals],
                "keep": [d.to_dict() for d in self.decisions if not d.remove]}


def _users(path: Path, used: dict[Path, list[str]]) -> list[str]:
    return used.get(path.resolve(), [])


def decide(entry: Entry, used: dict[Path, list[str]], kept_runs: list[str], reports: bool) -> Decision:
    """What gc does with one entry; ``used`` maps resolved output directories to the kept runs using them."""
    from pipeline.store.debris import is_orphan

    if entry.kind in (RAW, MIRROR):
        return Decision(entry, False, "the input data: never removed")
    if entry.kind == INDEX:
        return Decision(entry, False, "the run index: rewritten, never removed")
    if entry.kind == OTHER:
        return Decision(entry, False, "not recognised as this pipeline's: left alone")
    if entry.kind == DEBRIS:
        if is_orphan(entry.path):
            return Decision(entry, True, "debris of a process that no longer runs")
        return Decision(entry, False, "work in progress of a running process")
    if entry.kind == CHECKPOINTS:
        model = entry.path.with_name(entry.path.name[: -len(CHECKPOINTS_SUFFIX)])
        users = _users(model, used)
        if users:
            return Decision(entry, False, f"resumes training of kept run {users[0]}")
        return Decision(entry, True, "checkpoints of a model no kept run uses")
    if entry.kind == REPORT:
        if entry.path.name in kept_runs:
            return Decision(entry, False, "a kept run's report")
        if not reports:
            return Decision(entry, False, "a report: kept unless --reports")
        return Decision(entry, True, "the report of a run that is not kept")
    if entry.kind == OUTPUT:
        users = _users(entry.path, used)
        if users:
            more = f" (+{len(users) - 1} more)" if len(users) > 1 else ""
            return Decision(entry, False, f"used by {users[0]}{more}")
        return Decision(entry, True, "used by no kept run")
    return Decision(entry, False, "unknown kind: left alone")


def plan_gc(entries: list[Entry], used: dict[Path, list[str]], kept_runs: list[str], reports: bool = False) -> Plan:
    """The plan for ``entries`` (from :func:`pipeline.inspect.outputs.scan`): nothing is removed here."""
    used = {Path(p).resolve(): runs for p, runs in used.items()}
    return Plan([decide(e, used, kept_runs, reports) for e in entries], list(kept_runs))


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def check_removable(path: Path, data_dir: Path, report_dir: Path) -> None:
    """Raise ValueError unless ``path`` is strictly inside the data or report directory and outside raw/, mirror/."""
    if path.is_symlink():
        raise ValueError(f"refusing to remove {path}: a symlink")
    if _inside(path, data_dir) and path.resolve() != data_dir.resolve():
        if path.resolve().relative_to(data_dir.resolve()).parts[0] in NEVER:
            raise ValueError(f"refusing to remove {path}: the input data is never removed")
        return
    if _inside(path, report_dir) and path.resolve() != report_dir.resolve():
        return
    raise ValueError(f"refusing to remove {path}: it is not inside {data_dir} or {report_dir}")


def remove(path: Path) -> None:
    """Rename ``path`` to a debris name (atomic), then delete it: never a half-deleted output in place."""
    from pipeline.store.debris import owner_tag

    aside = path.with_name(f".{path.name}{owner_tag()}gc.old")
    if path.is_dir():
        os.rename(path, aside)
        shutil.rmtree(aside)
    else:
        path.unlink()


def execute(plan: Plan, data_dir: str | os.PathLike, report_dir: str | os.PathLike) -> int:
    """Remove what ``plan`` says; return the bytes freed. Reports removed: the run index is rewritten."""
    data_dir, report_dir = Path(data_dir), Path(report_dir)
    for d in plan.removals:
        check_removable(d.entry.path, data_dir, report_dir)
    freed = 0
    for d in plan.removals:
        if d.entry.path.exists() or d.entry.path.is_symlink():
            remove(d.entry.path)
            freed += d.entry.bytes
    if any(d.entry.kind == REPORT for d in plan.removals):
        rewrite_index(report_dir, plan.kept_runs)
    return freed


def rewrite_index(report_dir: Path, kept_runs: list[str]) -> None:
    """After reports were removed: ``latest`` to the newest kept run when it dangles, and the index rewritten."""
    from pipeline.report.files import LATEST_LINK
    from pipeline.report.index import point_latest, write_index

    latest = report_dir / LATEST_LINK
    if kept_runs and (latest.is_symlink() and not latest.exists()):
        point_latest(report_dir, kept_runs[-1])
    write_index(report_dir)
