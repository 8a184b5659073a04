"""A run's provenance: the code, software, checkout and data that made it, as the manifests recorded them.

Every output a run used is found from the stage directories the report shows,
following the inputs their manifests list (:mod:`pipeline.inspect.lineage`), so
the preparation and every ensemble member count too. Each manifest is read
through :func:`pipeline.store.read_manifest` (parsed and checked for format; its
own hash is what the report's manifest records). The record is JSON-able and
goes into ``metrics.json`` whole; :func:`provenance_section` shows it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SHORT = 12  # hex digits of a digest shown on the page (the record keeps all 64)
ACQUISITION_TASK = "FetchMNIST"


def _stage_row(label: str, directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    from pipeline.store.provenance import blas_threads

    git = (manifest.get("provenance") or {}).get("git") or {}
    return {
        "stage": label,
        "task": manifest.get("task", ""),
        "task_id": manifest.get("task_id", ""),
        "output": f"{directory.parent.name}/{directory.name}",
        "code_digest": (manifest.get("code") or {}).get("digest"),
        "created": manifest.get("created"),
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
        # the engine's kernels, and so a model's bits, depend on it: a member trained by one of two
        # Luigi workers ran on half the cores (tasks/cores.py)
        "blas_threads": blas_threads(manifest.get("provenance") or {}),
    }


def stage_records(stages: dict[str, str | os.PathLike], data_dir: str | os.PathLike | None
                  ) -> list[dict[str, Any]]:
    """One record per output the run used: {"stage", "task", "task_id", "output" (<stage dir>/<name>),
    "code_digest", "created", "git_commit", "git_dirty", "blas_threads" (NumPy's BLAS threads when it was
    made)}, oldest first (so upstream first).

    ``stages`` maps a section id to a stage's output directory; outputs reached only through the
    manifests' inputs under ``data_dir`` (the prepared data, an ensemble's other members) are labelled
    by their task's stage; without ``data_dir`` only ``stages`` are listed.
    The download has no code digest: its files are verified by their content (see :func:`data_hashes`).
    """
    from pipeline.inspect.lineage import lineage
    from pipeline.store import IntegrityError, read_manifest

    labels = {Path(d).resolve(): key for key, d in stages.items()}
    found: dict[Path, str] = dict(labels)
    for directory in list(labels) if data_dir is not None else []:
        for item in lineage(directory, data_dir):
            found.setdefault(item.directory.resolve(), "")
    rows = []
    for directory, label in found.items():
        try:
            manifest = read_manifest(directory)
        except IntegrityError:
            continue  # the raw download keeps a fetch record, not a task manifest (see data_hashes)
        rows.append(_stage_row(label or _stage_name(manifest.get("task", "")), directory, manifest))
    return sorted(rows, key=lambda r: r["created"] or "")  # stable: equal times keep the page's order


def _stage_name(task: str) -> str:
    """A readable stage label for a task reached through the inputs (``PrepareData`` -> ``preparation``)."""
    return {"PrepareData": "preparation", "TrainCNN": "training", "CleanData": "cleaning",
            "ExploreData": "exploration", "EvaluateCNN": "evaluation"}.get(task, task)


def data_hashes(acquisition: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{file name: {"sha256_content", "sha256_gz", "bytes"}} of the raw files, from the fetch record."""
    return {name: {"sha256_content": rec.get("sha256_content"), "sha256_gz": rec.get("sha256_gz"),
                   "bytes": rec.get("bytes")} for name, rec in sorted(acquisition.items())}


def provenance_record(stages: dict[str, str | os.PathLike], data_dir: str | os.PathLike | None,
                      acquisition: dict[str, dict[str, Any]], record: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
    """The provenance block of ``metrics.json``.

    ``record`` is what the report's own manifest records (its task, code digest, input hashes,
    provenance); without it (a report built outside the task) the environment of this process
    is used and no input hashes are known. Keys: environment (python, libraries, blas, platform,
    git, code_dir), report ({"task", "code_digest"}), stages (:func:`stage_records`), data
    (:func:`data_hashes`), inputs ({task id: {"path", "sha256"}} of the report's inputs' manifests).
    """
    from pipeline.store.provenance import environment

    record = record or {}
    return {
        "environment": record.get("provenance") or environment(),
        "report": {"task": record.get("task", ""), "code_digest": (record.get("code") or {}).get("digest")},
        "stages": stage_records(stages, data_dir),
        "data": data_hashes(acquisition),
        "inputs": record.get("inputs") or {},
    }


def _short(digest: str | None) -> str:
    return f"{digest[:SHORT]}…" if digest else "not recorded"


def _commit(commit: str | None, dirty: bool | None) -> str:
    if not commit:
        return "not a git checkout"
    return commit[:SHORT] + (" (uncommitted changes)" if dirty else "")


def _when(created: str | None) -> str:
    """``2026-11-23 22:27:58`` from an ISO time stamp in UTC."""
    return (created or "")[:19].replace("T", " ")


def provenance_section(prov: dict[str, Any]) -> dict[str, Any]:
    """The page section (the shape of :func:`pipeline.report.page.stage_section`) of a provenance block."""
    import pandas as pd

    from pipeline.report.tables import table_block

    env = prov["environment"]
    git = env.get("git") or {}
    stages = pd.DataFrame(
        [{"stage": r["stage"], "task": r["task"], "output": r["output"], "code digest": _short(r["code_digest"]),
          "created (UTC)": _when(r["created"]), "git commit": _commit(r["git_commit"], r["git_dirty"]),
          "BLAS threads": r.get("blas_threads") or ""}
         for r in prov["stages"]],
        columns=["stage", "task", "output", "code digest", "created (UTC)", "git commit", "BLAS threads"])
    libraries = pd.DataFrame([{"software": "Python", "version": env.get("python") or ""}]
                             + [{"software": name, "version": version or "not installed"}
                                for name, version in (env.get("libraries") or {}).items()],
                             columns=["software", "version"])
    blas = pd.DataFrame([{"library": b.get("internal_api"), "shipped in": b.get("library", ""),
                          "version": b.get("version"), "threads": b.get("num_threads"),
                          "threading layer": b.get("threading_layer"), "architecture": b.get("architecture")}
                         for b in env.get("blas") or []],
                        columns=["library", "shipped in", "version", "threads", "threading layer", "architecture"])
    data = pd.DataFrame([{"file": name, "bytes (gzip)": f"{h['bytes']:,}" if h.get("bytes") else "",
                          "content sha256": h["sha256_content"]} for name, h in prov["data"].items()],
                        columns=["file", "bytes (gzip)", "content sha256"])
    inputs = pd.DataFrame([{"input": task_id, "manifest sha256": rec.get("sha256", "")}
                           for task_id, rec in sorted(prov["inputs"].items())], columns=["input", "manifest sha256"])
    blas_text = "; ".join(f"{b.get('internal_api')} {b.get('version')}, {b.get('num_threads')} threads"
                          for b in env.get("blas") or []) or "none found"
    headline = [
        ("Git commit", _commit(git.get("commit"), git.get("dirty"))),
        ("Python", env.get("python") or ""),
        ("BLAS", blas_text),
        ("Report code digest", _short(prov["report"]["code_digest"])),
        ("Platform", env.get("platform") or ""),
    ]
    tables = [table_block(stages, "Outputs the run used: task, code digest, when made, from which commit",
                          wide=True, text=True),
              table_block(libraries, "Software", text=True), table_block(blas, "BLAS", text=True),
              table_block(data, "Input data: the four MNIST files, by the sha256 of their content", wide=True,
                          text=True)]
    if len(inputs):
        tables.append(table_block(inputs, "The report's inputs, by the sha256 of their manifests", wide=True,
                                  text=True))
    return {"id": "provenance", "title": "Provenance", "headline": headline, "figures": [], "tables": tables,
            "texts": []}
