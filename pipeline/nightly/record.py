"""A night's record (``nightly.json``): what ran, its fingerprint, and the history of earlier nights."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

NIGHTLY_DIR = "nightly"  # under the report directory: nightly/<YYYY-MM-DD>/
RECORD_FILE = "nightly.json"
PAGE_FILE = "nightly.html"
HEALTH_FILE = "mirrors.json"


def fingerprint(manifests: dict[str, dict[str, Any]], params: dict[str, Any],
                fetch_manifest: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What decides a night's model: the code digest of every task (from its output's manifest),
    the parameters, and the content hash of every input file."""
    return {
        "code": {task: m.get("code", {}).get("digest") for task, m in sorted(manifests.items())},
        "params": params,
        "data": {name: rec.get("sha256_content") for name, rec in sorted(fetch_manifest.items())},
    }


def previous_night(nightly_dir: str | os.PathLike, before: str, *, passed_only: bool = True) -> dict[str, Any] | None:
    """The record of the latest night strictly before the date ``before`` (YYYY-MM-DD), if any."""
    from pipeline import store

    candidates = []
    for path in Path(nightly_dir).glob(f"*/{RECORD_FILE}"):
        date = path.parent.name
        if date < before and not date.startswith("."):
            candidates.append((date, path))
    for date, path in sorted(candidates, reverse=True):
        try:
            record = store.read_verified_json(path)
        except store.IntegrityError:
            continue  # an altered record is no baseline
        if not passed_only or record.get("status") == "passed":
            return record
    return None
