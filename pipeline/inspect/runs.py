"""The runs of a report directory, oldest first, and run ids resolved the way a user types them.

A run is its ``report_dir/<run id>/metrics.json`` (read verified against the run
directory's manifest). References: an exact run id, a unique prefix of one,
``latest`` (the newest by ``created``), ``previous`` (the one before it), or
``latest~N`` (N runs before the newest).
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

from pipeline.inspect.errors import NotFound
from pipeline.report.files import METRICS_FILE
_RELATIVE = re.compile(r"^latest(?:~(\d+))?$")


class UnknownRun(NotFound):
    """A run reference matches no run (or several); the message lists the nearest run ids."""


def load_runs(report_dir: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """(metrics of every run, oldest first by ``created`` then run id; problems of runs that failed verification).

    Raises :class:`NotFound` when ``report_dir`` does not exist.
    """
    from pipeline import store

    report_dir = Path(report_dir)
    if not report_dir.is_dir():
        raise NotFound(f"no report directory at {report_dir.resolve()}: run the pipeline first, or pass "
                       "--report-dir (the default is [storage] report_dir in luigi.cfg of the current directory)")
    runs, problems = [], []
    for path in sorted(report_dir.glob(f"*/{METRICS_FILE}")):
        if path.parent.name.startswith(".") or path.parent.is_symlink():
            continue  # `latest` and staging directories
        try:
            metrics = store.read_verified_json(path)
        except store.IntegrityError as exc:
            problems.append(str(exc))
            continue
        metrics.setdefault("run_id", path.parent.name)
        metrics["report_path"] = str(path.parent)
        runs.append(metrics)
    runs.sort(key=lambda m: (str(m.get("created", "")), str(m["run_id"])))
    return runs, problems


def nearest(ref: str, ids: list[str], n: int = 5) -> list[str]:
    """Run ids that look like ``ref`` (difflib ratio), best first; those containing it come first."""
    containing = [i for i in ids if ref and ref in i]
    close = difflib.get_close_matches(ref, ids, n=n, cutoff=0.4)
    return list(dict.fromkeys(containing + close))[:n]


def resolve_run(runs: list[dict[str, Any]], ref: str) -> dict[str, Any]:
    """The run ``ref`` names among ``runs`` (oldest first); :class:`UnknownRun` with suggestions otherwise."""
    if not runs:
        raise UnknownRun(f"there are no runs to look {ref!r} up in: the report directory holds no run yet")
    ids = [str(m["run_id"]) for m in runs]
    match = _RELATIVE.match(ref) if ref != "previous" else _RELATIVE.match("latest~1")
    if match:
        back = int(match.group(1) or 0)
        if back >= len(runs):
            raise UnknownRun(f"{ref!r} asks for run {back + 1} from the newest, but there are only {len(runs)} "
                             f"run(s): {', '.join(ids)}")
        return runs[-1 - back]
    if ref in ids:
        return runs[ids.index(ref)]
    prefixed = [m for m in runs if str(m["run_id"]).startswith(ref)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        raise UnknownRun(f"{ref!r} is the beginning of {len(prefixed)} run ids: "
                         f"{', '.join(m['run_id'] for m in prefixed)}; give more of it")
    near = nearest(ref, ids)
    hint = ("nearest: " + ", ".join(near)) if near else ("newest: " + ", ".join(reversed(ids[-5:])))
    raise UnknownRun(f"no run {ref!r} among the {len(ids)} run(s) of the report directory; {hint} "
                     "(or use latest, previous)")
