"""Assemble the self-contained HTML report of one run, and the index of all runs.

Every figure is embedded as a base64 data URI and the stylesheet is inline, so
``report.html`` can be mailed, archived or opened offline on its own.
"""
from __future__ import annotations

import base64
import datetime as _dt
import os
from pathlib import Path
from typing import Any

import jinja2

from pipeline import store

TEMPLATES = Path(__file__).with_name("templates")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda x, digits=2: f"{100.0 * float(x):.{digits}f}%"
    env.filters["num"] = lambda x: f"{int(x):,}"
    return env


def png_data_uri(path: str | os.PathLike) -> str:
    """The PNG at ``path`` as a ``data:image/png;base64,...`` URI."""
    data = Path(path).read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"{path} is not a PNG file; rerun the task that made it")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def collect_section(directory: str | os.PathLike, summary: dict[str, Any]) -> dict[str, list[dict]]:
    """Figures (as data URIs) and tables (as HTML) listed in a stage's summary JSON.

    ``summary["figures"]`` lists {"file", "title", "caption"}; ``summary["tables"]``
    lists {"file", "title"} naming pickled pandas DataFrames in ``directory``.
    """
    import pandas as pd

    directory = Path(directory)
    figures = [
        {"title": f.get("title", f["file"]), "caption": f.get("caption", ""),
         "uri": png_data_uri(directory / f["file"])}
        for f in summary.get("figures", [])
    ]
    tables = []
    for t in summary.get("tables", []):
        frame = pd.read_pickle(directory / t["file"])
        html = frame.to_html(classes="data", float_format=lambda v: f"{v:.4g}", border=0)
        tables.append({"title": t.get("title", t["file"]), "html": f'<div class="table-wrap">{html}</div>'})
    return {"figures": figures, "tables": tables}


def metrics_record(run_id: str, params: dict[str, Any], train: dict[str, Any],
                   evaluation: dict[str, Any]) -> dict[str, Any]:
    """The flat ``metrics.json`` of one run: what the run index and cron jobs read."""
    return {
        "run_id": run_id,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "test_accuracy": float(evaluation["test_accuracy"]),
        "test_accuracy_ci95": evaluation.get("ci95"),
        "test_error_count": evaluation.get("n_errors"),
        "n_test": evaluation.get("n_test"),
        "ece": evaluation.get("ece"),
        "best_val_accuracy": train.get("best_val_accuracy"),
        "epochs": int(params["epochs"]),
        "epochs_run": train.get("epochs_run"),
        "seed": int(params["seed"]),
        "preset": params["preset"],
        "train_limit": int(params.get("train_limit", 0)),
        "train_seconds": float(train["train_seconds"]),
        "params_sha256": train["params_sha256"],
        "parameters": params,
    }


def render_report(context: dict[str, Any]) -> str:
    """Render ``templates/report.html.j2`` with ``context`` to an HTML string."""
    return _environment().get_template("report.html.j2").render(**context)


def point_latest(report_dir: str | os.PathLike, run_id: str) -> None:
    """Make ``report_dir/latest`` a symlink to ``run_id``, replacing any old one atomically."""
    report_dir = Path(report_dir)
    tmp = report_dir / f".latest.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(run_id, tmp)
    os.replace(tmp, report_dir / "latest")


def run_history(report_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """metrics.json of every run under ``report_dir``, oldest first."""
    runs = []
    for path in Path(report_dir).glob("*/metrics.json"):
        if path.parent.name.startswith(".") or path.parent.is_symlink():
            continue
        try:
            runs.append(store.read_json(path))
        except ValueError:
            continue  # a hand-edited, unreadable metrics file must not break the index
    return sorted(runs, key=lambda m: (m.get("created", ""), m.get("run_id", "")))


def render_index(report_dir: str | os.PathLike) -> None:
    """Write ``index.html`` and ``history.csv`` listing the metrics of every run."""
    report_dir = Path(report_dir)
    runs = run_history(report_dir)
    columns = ["created", "run_id", "preset", "epochs", "seed", "train_limit",
               "test_accuracy", "best_val_accuracy", "train_seconds", "params_sha256"]
    lines = [",".join(columns)]
    for m in runs:
        lines.append(",".join(str(m.get(c, "")) for c in columns))
    store.write_bytes(report_dir / "history.csv", ("\n".join(lines) + "\n").encode())
    html = _environment().get_template("index.html.j2").render(runs=runs)
    store.write_bytes(report_dir / "index.html", html.encode("utf-8"))


def headline(summary: dict[str, Any], limit: int = 24) -> list[tuple[str, Any]]:
    """The scalar entries of a stage summary, for a key/value table (nested data is skipped)."""
    rows = []
    for key, value in summary.items():
        if isinstance(value, bool) or isinstance(value, (int, str)):
            rows.append((key.replace("_", " "), value))
        elif isinstance(value, float):
            rows.append((key.replace("_", " "), f"{value:.6g}"))
    return rows[:limit]


def history_table(history: list[dict[str, Any]]) -> str:
    """The per-epoch training history as an HTML table."""
    import pandas as pd

    if not history:
        return "<p>No epochs recorded.</p>"
    frame = pd.DataFrame(history).set_index("epoch")
    html = frame.to_html(classes="data", float_format=lambda v: f"{v:.4g}", border=0)
    return f'<div class="table-wrap">{html}</div>'


def rerun_command(params: dict[str, Any]) -> str:
    """The luigi command line that regenerates this run."""
    parts = ["luigi --module tasks RunPipeline --local-scheduler"]
    for key, value in sorted(params.items()):
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(p for p in parts if p)
