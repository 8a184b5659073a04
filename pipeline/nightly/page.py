"""The nightly page: the night's verdict, its comparison with the previous night, mirror health."""
from __future__ import annotations

from typing import Any

from pipeline.nightly.health import SERVING


def short_name(file_name: str) -> str:
    """``train-images-idx3-ubyte.gz`` -> ``train-images``: a column heading."""
    return file_name.split("-idx")[0]


def mirror_rows(health: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per mirror: its status for each file, whether it honoured ``Range``, the time the
    check took, and what went wrong (each distinct reason once, naming the files when not all share it)."""
    rows = []
    for spec in health.get("checked", sorted(health["mirrors"])):
        mirror = health["mirrors"][spec]
        files = mirror["files"]
        ranges = {f["range"] for f in files.values() if "range" in f}
        problems: dict[str, list[str]] = {}
        for name, f in files.items():
            if f["status"] not in SERVING and f.get("detail"):
                problems.setdefault(f["detail"], []).append(short_name(name))
        detail = "; ".join(reason if len(names) == len(files) else f"{', '.join(names)}: {reason}"
                           for reason, names in problems.items())
        verified_on = sorted({f["verified_on"] for f in files.values() if f["status"] == "unchanged"
                              and f.get("verified_on")})
        if verified_on and not detail:
            detail = f"validators unchanged since the full check of {', '.join(verified_on)}"
        rows.append({
            "spec": spec,
            "statuses": [(short_name(name), f["status"]) for name, f in files.items()],
            "range": "" if not ranges else ("yes" if ranges == {True} else "no"),
            "seconds": mirror["seconds"],
            "serves_all": mirror["serves_all"],
            "detail": detail,
        })
    return rows


def relocated_report(html: str, levels: int = 1) -> str:
    """A run report's HTML for a copy kept ``levels`` folders deeper than ``report_dir/<run-id>/``
    (the night's copy is in ``report_dir/nightly/<date>/``: one more): its links to other runs
    (``href="../<run-id>/report.html"``, from the narrative and comparison) still reach them."""
    return html.replace('href="../', 'href="' + "../" * (levels + 1))


def render_night(record: dict[str, Any]) -> str:
    """``nightly.html`` of one night (self-contained; links to that night's copy of the run report)."""
    from pipeline.report.render import render

    return render("nightly.html.j2", night=record, mirrors=mirror_rows(record["mirror_health"]))
