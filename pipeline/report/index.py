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


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"


def index_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run (oldest first) for the index table: {"cells": [{"text", "key", "note"}], "run_id", "href"}.

    Columns are :data:`INDEX_COLUMNS`; a sort key is a number for numeric columns ("" when the value
    is missing) so that the table sorts 9 before 10, and the text otherwise; a note is shown small
    beside the text (the accuracy's 95% interval, an ensemble's number of models).
    """
    def cell(text: Any, key: Any = None, note: str = "") -> dict[str, Any]:
        return {"text": str(text), "key": text if key is None else key, "note": note}

    rows = []
    for number, m in enumerate(runs, start=1):
        ci = m.get("test_accuracy_ci95") or [None, None]
        augment = (m.get("parameters") or {}).get("augment")
        limit = m.get("train_limit") or 0
        created = str(m.get("created", ""))
        val = m.get("best_val_accuracy")
        seconds = m.get("train_seconds")
        models = m.get("ensemble") or MISSING["ensemble"]
        cells = [
            cell(number),
            cell(m.get("run_id", "")),
            cell(created[:16].replace("T", " "), created),  # to the minute (UTC); sorted by the full stamp
            cell(m.get("preset", ""), note=f"×{models}" if models > 1 else ""),  # an ensemble of N: "×N"
            cell(m.get("epochs", "")),
            cell(m.get("seed", "")),
            cell(f"{limit:,}" if limit else "all", limit or 10**9),
            cell("" if augment is None else ("yes" if augment else "no"), "" if augment is None else str(augment)),
            cell(_pct(m.get("test_accuracy")), m.get("test_accuracy", ""),
                 f"{100 * ci[0]:.2f}–{100 * ci[1]:.2f}" if ci[0] is not None else ""),
            cell(_pct(val), "" if val is None else val),
            cell("" if seconds is None else f"{seconds:.1f}", "" if seconds is None else seconds),
        ]
        rows.append({"cells": cells, "run_id": str(m.get("run_id", "")),
                     "href": f"{m.get('run_id', '')}/{REPORT_FILE}"})
    return rows


INDEX_COLUMNS = ["#", "run", "rendered (UTC)", "preset (×models)", "epochs", "seed", "train images", "augment",
                 "test accuracy (95% interval)", "best validation", "train seconds"]
TEXT_COLUMNS = (1, 2, 3)  # left-aligned
RUN_COLUMN = INDEX_COLUMNS.index("run")  # its cell is the link to the run's page


def trend_charts(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The index's charts across runs (oldest first): test accuracy with its 95% interval and the best so
    far, and training time; each {"id", "title", "svg", "caption"}."""
    from pipeline.report.trends import Point, trend_svg

    if not runs:
        return []
    accuracy, seconds = [], []
    for number, m in enumerate(runs, start=1):
        href = f"{m.get('run_id', '')}/{REPORT_FILE}"
        ci = m.get("test_accuracy_ci95") or [None, None]
        low, high = ((100 * ci[0], 100 * ci[1]) if ci[0] is not None else (None, None))
        interval = f" (95% interval {_pct(ci[0])} – {_pct(ci[1])})" if ci[0] is not None else ""
        accuracy.append(Point(100 * m["test_accuracy"], low, high, href,
                              f"run {number}: {m.get('run_id')}, {_pct(m['test_accuracy'])}{interval}"))
        if m.get("train_seconds") is not None:
            seconds.append(Point(float(m["train_seconds"]), href=href,
                                 tooltip=f"run {number}: {m.get('run_id')}, {m['train_seconds']:.1f} s"))
    n = len(runs)
    best = max(range(n), key=lambda i: runs[i]["test_accuracy"])
    charts = [{"id": "accuracy-chart", "title": "Test accuracy",
               "svg": trend_svg(accuracy, "Test accuracy per run, with its 95% interval", "test accuracy (%)",
                                floor=0.0, ceiling=100.0, running_best=True, chart_id="accuracy-svg"),
               "caption": (f"Test accuracy of each run (dots) with its 95% Wilson interval (bars)"
                           f"{'; dashed: the best so far' if n > 1 else ''}. Highest: run {best + 1}, "
                           f"{runs[best].get('run_id')}, {_pct(runs[best]['test_accuracy'])}.")}]
    if seconds:
        charts.append({"id": "time-chart", "title": "Training time",
                       "svg": trend_svg(seconds, "Training time per run", "training time (s)", floor=0.0,
                                        include=0.0, chart_id="time-svg"),
                       "caption": "Seconds spent training each run (all members of an ensemble together)."})
    return charts


def write_index(report_dir: str | os.PathLike) -> None:
    """Write ``history.csv``, then ``index.html``, listing the metrics of every run."""
    from pipeline import store
    from pipeline.report.render import render

    report_dir = Path(report_dir)
    runs = run_history(report_dir)
    store.write_bytes(report_dir / HISTORY_FILE, history_csv(runs).encode("utf-8"))
    html = render("index.html.j2", runs=runs, rows=index_rows(runs), columns=INDEX_COLUMNS, run_column=RUN_COLUMN,
                  text_columns=TEXT_COLUMNS, charts=trend_charts(runs), history_file=HISTORY_FILE)
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
