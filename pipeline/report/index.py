"""The run history of a report directory: index.html, history.csv and the ``latest`` link.

Each run folder holds its ``metrics.json``; the index lists them all, oldest first.
Every file is replaced atomically, and ``index.html`` is written last, so an index
that lists a run was completed for it.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from pipeline.report.files import HISTORY_FILE, INDEX_FILE, LATEST_LINK, METRICS_FILE, REPORT_FILE

HISTORY_COLUMNS = ["created", "run_id", "preset", "epochs", "seed", "train_limit",
                   "test_accuracy", "best_val_accuracy", "train_seconds", "params_sha256", "ensemble"]
MISSING = {"ensemble": 1}  # a run recorded before ensembles existed was one model


def run_history(report_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """metrics.json of every run under ``report_dir``, oldest first (``latest`` and hidden folders skipped)."""
    from pipeline import store

    runs = []
    for path in Path(report_dir).glob(f"*/{METRICS_FILE}"):
        if path.parent.name.startswith(".") or path.parent.is_symlink():
            continue
        try:
            runs.append(store.read_json(path))
        except ValueError:
            continue  # a hand-edited, unreadable metrics file must not break the index
    return sorted(runs, key=lambda m: (m.get("created", ""), m.get("run_id", "")))


def history_csv(runs: list[dict[str, Any]]) -> str:
    """The runs as CSV text, one row per run, columns :data:`HISTORY_COLUMNS`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for m in runs:
        writer.writerow([m[c] if m.get(c) is not None else MISSING.get(c, "") for c in HISTORY_COLUMNS])
    return out.getvalue()


def point_latest(report_dir: str | os.PathLike, run_id: str) -> None:
    """Make ``report_dir/latest`` a symlink to ``run_id``, replacing any old one atomically."""
    from pipeline.store.debris import owner_tag

    report_dir = Path(report_dir)
    tmp = report_dir / f".{LATEST_LINK}{owner_tag()}.tmp"  # named after its owner: a killed run's is swept
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(run_id, tmp)
    os.replace(tmp, report_dir / LATEST_LINK)


def write_index(report_dir: str | os.PathLike) -> None:
    """Write ``history.csv``, then ``index.html``, listing the metrics of every run."""
    from pipeline import store
    from pipeline.report.render import render

    report_dir = Path(report_dir)
    runs = run_history(report_dir)
    store.write_bytes(report_dir / HISTORY_FILE, history_csv(runs).encode("utf-8"))
    html = render("index.html.j2", runs=runs, report_file=REPORT_FILE, history_file=HISTORY_FILE)
    store.write_bytes(report_dir / INDEX_FILE, html.encode("utf-8"))


def update_index(report_dir: str | os.PathLike, run_id: str) -> None:
    """Point ``latest`` at ``run_id`` and rewrite the index of every run (index.html last)."""
    point_latest(report_dir, run_id)
    write_index(report_dir)


def index_lists(report_dir: str | os.PathLike, run_id: str) -> bool:
    """Does ``report_dir`` hold an index.html that links to ``run_id``'s page, and a ``latest`` link
    that resolves?"""
    from markupsafe import escape  # how the template escapes the link

    report_dir = Path(report_dir)
    try:
        html = (report_dir / INDEX_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return f'href="{escape(run_id)}/{REPORT_FILE}"' in html and (report_dir / LATEST_LINK).exists()
