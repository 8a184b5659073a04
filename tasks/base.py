"""The base class every pipeline task derives from.

Each task writes one output directory, built under a staging name and swapped
in atomically (:func:`pipeline.store.staged_dir`); its Luigi target is the
primary file inside it. A task is complete only when its output exists, is no
older than the outputs of the tasks it requires, and those are complete too:
deleting an intermediate therefore reruns that task and everything downstream
of it, as ``make`` would, while an untouched pipeline is a no-op.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import luigi

from tasks.config import data_path


def _flatten(struct: Any) -> list:
    if isinstance(struct, dict):
        return [t for v in struct.values() for t in _flatten(v)]
    if isinstance(struct, (list, tuple)):
        return [t for v in struct for t in _flatten(v)]
    return [] if struct is None else [struct]


class PipelineTask(luigi.Task):
    """A task with one output directory under ``data_dir/<stage>/<slug>``.

    Subclasses set ``stage`` (a folder name under the data directory) and
    ``primary`` (the file inside the output directory that marks completion;
    it must be the last file written) and implement ``run``.
    """

    stage: str = ""
    primary: str = ""

    def params_digest(self) -> str:
        """Hex sha256 of the significant parameters: equal for equal settings, whatever their order."""
        params = self.to_str_params(only_significant=True)
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()

    def slug(self) -> str:
        """A short, stable name for this parameter set: readable prefix plus a hash."""
        return f"{self.slug_prefix()}{self.params_digest()[:10]}"

    def slug_prefix(self) -> str:
        return ""

    def output_dir(self) -> Path:
        return data_path(self.stage, self.slug())

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(self.output_dir() / self.primary))

    def complete(self) -> bool:
        out = Path(self.output().path)
        if not out.exists():
            return False
        mtime = os.stat(out).st_mtime_ns
        for dep in _flatten(self.requires()):
            if not dep.complete():
                return False
            for target in _flatten(dep.output()):
                path = Path(target.path)
                if path.exists() and os.stat(path).st_mtime_ns > mtime:
                    return False  # an input was rebuilt after us: we are stale
        return True

    def input_dir(self, key: str | None = None) -> Path:
        """The output directory of a required task (by key when requires() is a dict)."""
        target = self.input()[key] if key is not None else self.input()
        return Path(target.path).parent

    def output_load(self) -> Any:
        """The primary output, loaded: a dict from its pickle or JSON (one line in a Python shell).

        ``from tasks import PrepareData; data = PrepareData(train_limit=3000).output_load()``
        """
        from pipeline import store

        path = self.output().path
        return store.read_json(path) if path.endswith(".json") else store.read_pickle(path)

    def progress(self, fraction: float, message: str) -> None:
        """Report progress to the Luigi scheduler (visible in luigid's web page).

        Outside a Luigi worker (``task.run()`` from a Python shell) there is no
        scheduler to tell, and the call does nothing.
        """
        if self.set_progress_percentage is None:  # Luigi sets these callbacks only inside a worker
            return
        self.set_progress_percentage(round(100.0 * fraction, 1))
        self.set_status_message(message)
