"""One run's self-contained HTML page, and its metrics record, written together.

The page opens with a narrative and a comparison with the previous and the best run
of its report directory (:mod:`pipeline.report.narrative`, :mod:`~pipeline.report.comparison`),
then renders every stage the same way from its ``result.json`` (see
:mod:`pipeline.result`): its title, headline rows, figures with their captions,
tables and texts, and ends with the run's provenance (:mod:`pipeline.report.provenance`).
Figures are embedded as base64 data URIs and the stylesheet is
inline, so ``report.html`` can be mailed, archived or opened offline on its own.
Every file read here is first checked against its directory's integrity manifest.
"""
from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.report.files import METRICS_FILE, REPORT_FILE
from pipeline.report.render import cell, render
from pipeline.report.tables import table_block

PAGE_TEMPLATE = "report.html.j2"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDE_FIGURE_PX = 900  # a figure at least this wide spans the page instead of half of it


def png_data_uri(data: bytes, name: str) -> str:
    """PNG bytes (of the file ``name``) as a ``data:image/png;base64,...`` URI."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"{name} is not a PNG file; rerun the task that made it")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def png_width(data: bytes) -> int:
    """The width in pixels of a PNG image (from its IHDR chunk, which always comes first)."""
    return int.from_bytes(data[16:20], "big")


def _figure(directory: Path, entry: dict[str, str]) -> dict[str, Any]:
    from pipeline.store.manifest import verified_bytes

    data = verified_bytes(directory / entry["file"])
    return {"title": entry["title"], "caption": entry["caption"], "uri": png_data_uri(data, entry["file"]),
            "wide": png_width(data) >= WIDE_FIGURE_PX}


def _label(name: str) -> str:
    text = name.replace("_", " ")
    return text[:1].upper() + text[1:]


def stage_section(section_id: str, directory: str | os.PathLike, title: str | None = None) -> dict[str, Any]:
    """The page section of the stage whose output is ``directory``, built from its result.json alone:
    {"id", "title", "headline" [(label, text)], "figures" [{"title", "caption", "uri", "wide"}],
    "tables" [{"title", "html", "wide"}], "texts" [{"title", "text"}]}; ``title`` replaces the stage's."""
    from pipeline import store
    from pipeline.result import read_result
    from pipeline.store.manifest import verified_bytes

    directory = Path(directory)
    result = read_result(directory)
    return {
        "id": section_id,
        "title": title or result["title"],
        "headline": [(label, cell(value)) for label, value in result["headline"]],
        "figures": [_figure(directory, f) for f in result["figures"]],
        "tables": [table_block(store.read_verified(directory / t["file"]), t["title"]) for t in result["tables"]],
        "texts": [{"title": _label(t["title"]), "text": verified_bytes(directory / t["file"]).decode("utf-8")}
                  for t in result["texts"]],
    }


def acquisition_section(manifest: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The acquisition section, in the same shape as :func:`stage_section`, from the fetch manifest
    {file name: {"mirror", "bytes", "sha256_content", "seconds", "failed_attempts", ...}}."""
    import pandas as pd

    files = sorted(manifest.items())
    frame = pd.DataFrame(
        [{"file": name, "served by": f["mirror"], "bytes (gzip)": f"{f['bytes']:,}",
          "content sha256": f["sha256_content"][:16] + "…", "seconds": f"{f['seconds']:.2f}",
          "failed attempts": len(f["failed_attempts"])} for name, f in files],
        columns=["file", "served by", "bytes (gzip)", "content sha256", "seconds", "failed attempts"])
    mirrors = sorted({f["mirror"] for _, f in files})
    headline = [
        ("Files", f"{len(files)}"),
        ("Bytes (gzip)", f"{sum(f['bytes'] for _, f in files):,}"),
        ("Served by", ", ".join(mirrors)),
        ("Failed attempts", f"{sum(len(f['failed_attempts']) for _, f in files)}"),
    ]
    return {"id": "acquisition", "title": "Acquisition", "headline": headline, "figures": [],
            "tables": [table_block(frame, "Files, each verified by the sha256 of its content")],
            "texts": []}


@dataclass(frozen=True)
class RunReport:
    """One run's page (HTML text) and its metrics record."""

    html: str
    metrics: dict[str, Any]


def run_report(run_id: str, params: dict[str, Any], command: str, acquisition: dict[str, dict[str, Any]],
               stages: dict[str, str | os.PathLike], report_dir: str | os.PathLike | None = None,
               data_dir: str | os.PathLike | None = None, record: dict[str, Any] | None = None) -> RunReport:
    """The report of one run.

    ``params`` are the run's significant parameters (typed values); ``command`` the command line
    that regenerates the run; ``acquisition`` the fetch manifest; ``stages`` maps a section id to
    the output directory of the stage shown there, in page order, and must hold "training" and
    "evaluation", whose summaries feed the metrics record. For an ensemble, "training" is its
    member 0, and says so in its title; the evaluation shows every member.

    ``report_dir`` holds the other runs this one is compared with (none without it), ``data_dir``
    their outputs (and this run's, for provenance); ``record`` is what the report's manifest will
    record (its provenance and input hashes go into ``metrics.json``).
    """
    from pipeline.report.comparison import comparison_blocks, compare_with_references, load_predictions
    from pipeline.report.metrics import metrics_record
    from pipeline.report.narrative import narrative
    from pipeline.report.provenance import provenance_record, provenance_section
    from pipeline.result import read_result

    summaries = {key: read_result(stages[key])["summary"] for key in ("training", "evaluation")}
    metrics = metrics_record(run_id, params, summaries["training"], summaries["evaluation"], command)
    metrics["provenance"] = provenance_record(stages, data_dir, acquisition, record)
    runs, problems = _other_runs(report_dir, metrics)
    comparisons = compare_with_references(metrics, load_predictions(stages["evaluation"]), runs, data_dir) \
        if runs else []
    opening = narrative(metrics, summaries["training"], comparisons, None if report_dir is None else len(runs),
                        REPORT_FILE)
    sections = [acquisition_section(acquisition)]
    titles = {}
    if metrics["ensemble"] > 1:
        titles["training"] = (f"Training: member 0 of {metrics['ensemble']} "
                              f"(seed {metrics['members'][0]['seed']}; the others are in the evaluation's table)")
    sections += [stage_section(key, directory, titles.get(key)) for key, directory in stages.items()]
    sections.append(provenance_section(metrics["provenance"]))
    html = render(PAGE_TEMPLATE, run_id=run_id, metrics=metrics, sections=sections, command=command,
                  narrative=opening, comparisons=comparison_blocks(comparisons, REPORT_FILE), problems=problems)
    return RunReport(html=html, metrics=metrics)


def _other_runs(report_dir: str | os.PathLike | None, metrics: dict[str, Any]
                ) -> tuple[list[dict[str, Any]], list[str]]:
    """(the runs of ``report_dir`` this run is compared with, oldest first; why others were left out)."""
    from pipeline.inspect.runs import load_runs
    from pipeline.report.comparison import other_runs

    if report_dir is None or not Path(report_dir).is_dir():
        return [], []
    runs, problems = load_runs(report_dir)
    return other_runs(metrics, runs), problems


def write_run_report(report: RunReport, directory: str | os.PathLike,
                     record: dict[str, Any] | None = None) -> Path:
    """Write ``report`` into ``directory`` (report.html, metrics.json), then the integrity manifest
    (with ``record``: how the report was made); return the page's path."""
    from pipeline import store

    directory = Path(directory)
    store.write_json(directory / METRICS_FILE, report.metrics)
    store.write_bytes(directory / REPORT_FILE, report.html.encode("utf-8"))
    store.write_manifest(directory, record)
    return directory / REPORT_FILE
