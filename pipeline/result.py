"""The stage-result contract: what every stage returns, and the one function that writes it.

A stage's pipeline code returns one :class:`StageResult`: its summary (facts as
nested JSON), its headline (the few numbers a reader sees first), its tables
(DataFrames), its figures (drawn ``Figure`` objects, with captions computed from
the data), free texts, and its artifacts (the objects downstream tasks and
people load). :func:`write_result` writes all of it into an output directory,
``result.json`` last; the report renders any stage from ``result.json`` alone.

Files in an output directory, by kind::

    <artifact>.pkl   each artifact, a plain pickle (dicts of arrays, DataFrames)
    <table>.pkl      each table, a pickled DataFrame
    <figure>.png     each figure
    <text>.txt       each text
    result.json      {"title", "summary", "headline", "tables", "figures", "texts", "artifacts"}
    manifest.json    the sha256 of every file above, and how they were made (written last)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importing matplotlib/pandas only for types would slow every task import
    import pandas as pd
    from matplotlib.figure import Figure as MplFigure

RESULT_FILE = "result.json"


@dataclass(frozen=True)
class Figure:
    """A drawn figure, written as ``<name>.png``; the caption states what the data show."""

    name: str
    title: str
    caption: str
    figure: "MplFigure"


@dataclass(frozen=True)
class Table:
    """A table, written as ``<name>.pkl`` (a pickled DataFrame) and shown in the report."""

    name: str
    title: str
    frame: "pd.DataFrame"


@dataclass
class StageResult:
    """Everything one stage computed, as one explicit value.

    ``headline`` is an ordered list of (label, value) pairs: values are numbers
    or short strings, formatted by the stage where the format matters.
    ``artifacts`` maps a file stem to a picklable object (plain containers,
    NumPy arrays, pandas objects) written as ``<stem>.pkl``.
    """

    title: str
    summary: dict[str, Any]
    headline: list[tuple[str, Any]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)

    def index(self) -> dict[str, Any]:
        """The JSON-able description written to ``result.json``."""
        return {
            "title": self.title,
            "summary": self.summary,
            "headline": [[label, value] for label, value in self.headline],
            "tables": [{"file": f"{t.name}.pkl", "title": t.title} for t in self.tables],
            "figures": [{"file": f"{f.name}.png", "title": f.title, "caption": f.caption} for f in self.figures],
            "texts": [{"file": f"{name}.txt", "title": name} for name in self.texts],
            "artifacts": [f"{name}.pkl" for name in self.artifacts],
        }


def write_result(result: StageResult, directory: str | os.PathLike, record: dict[str, Any] | None = None) -> Path:
    """Write every part of ``result`` into ``directory``, then ``result.json``, then the integrity
    manifest (with ``record``: what the caller knows of how the result was made); return result.json's path.
    """
    from pipeline import store
    from pipeline.figures import save_png

    directory = Path(directory)
    names = ([f"{n}.pkl" for n in result.artifacts] + [f"{t.name}.pkl" for t in result.tables]
             + [f"{f.name}.png" for f in result.figures] + [f"{n}.txt" for n in result.texts])
    clashes = sorted({n for n in names if names.count(n) > 1} | ({RESULT_FILE} & set(names)))
    if clashes:
        raise ValueError(f"stage '{result.title}' names these files twice: {clashes}")
    for name, obj in result.artifacts.items():
        store.write_pickle(directory / f"{name}.pkl", obj)
    for table in result.tables:
        store.write_pickle(directory / f"{table.name}.pkl", table.frame)
    for fig in result.figures:
        save_png(fig.figure, directory / f"{fig.name}.png")
    for name, text in result.texts.items():
        store.write_bytes(directory / f"{name}.txt", text.encode("utf-8"))
    path = directory / RESULT_FILE
    store.write_json(path, result.index())
    store.write_manifest(directory, record)
    return path


def read_result(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``result.json`` of a stage's output directory, verified against its manifest."""
    from pipeline import store

    return store.read_verified(Path(directory) / RESULT_FILE)
