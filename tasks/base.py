"""The base class every pipeline task derives from.

Each task writes one output directory, built under a staging name and swapped
in atomically; what goes in it is the :class:`pipeline.result.StageResult` its
stage returns, written by :meth:`PipelineTask.write_result`. A task is complete
only when its output exists, is no older than the outputs of the tasks it
requires, and those are complete too: deleting an intermediate therefore reruns
that task and everything downstream of it, as ``make`` would, while an untouched
pipeline is a no-op.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import luigi

from tasks.config import data_path, slug

log = logging.getLogger("luigi-interface")

PROGRESS_INTERVAL = 1.0  # seconds between scheduler updates and terminal redraws
LOG_INTERVAL = 10.0  # seconds between progress lines when stderr is a log file, not a terminal


def flatten(struct: Any) -> list:
    """The leaves of a nested dict/list/tuple structure (Luigi's requires() and output() shapes)."""
    if isinstance(struct, dict):
        return [t for v in struct.values() for t in flatten(v)]
    if isinstance(struct, (list, tuple)):
        return [t for v in struct for t in flatten(v)]
    return [] if struct is None else [struct]


class PipelineTask(luigi.Task):
    """A task with one output directory under ``data_dir/<stage>/<slug>``.

    Subclasses set ``stage`` (a folder name under the data directory) and
    ``primary`` (the file inside the output directory that ``output()`` names and
    ``output_load()`` loads) and implement ``run``.
    """

    stage: str = ""
    primary: str = ""

    def params_digest(self) -> str:
        """Hex sha256 of the significant parameters: equal for equal settings, whatever their order."""
        params = self.to_str_params(only_significant=True)
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()

    def slug(self) -> str:
        """A short, stable name for this parameter set: readable prefix plus a hash."""
        return slug(self.slug_prefix(), self.params_digest())

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
        for dep in flatten(self.requires()):
            if not dep.complete():
                return False
            for target in flatten(dep.output()):
                path = Path(target.path)
                if path.exists() and os.stat(path).st_mtime_ns > mtime:
                    return False  # an input was rebuilt after us: we are stale
        return True

    def input_dir(self, key: str | None = None) -> Path:
        """The output directory of a required task (by key when requires() is a dict)."""
        target = self.input()[key] if key is not None else self.input()
        return Path(target.path).parent

    def write_result(self, result) -> None:
        """Write a stage's :class:`~pipeline.result.StageResult` as this task's output directory, atomically."""
        from pipeline import store
        from pipeline.result import write_result

        with store.staged_dir(self.output_dir()) as tmp:
            write_result(result, tmp)

    def output_load(self, name: str | None = None) -> Any:
        """A file of this task's output, loaded: the primary one by default (one line in a Python shell).

        ``from tasks import PrepareData; data = PrepareData(train_limit=3000).output_load()``
        """
        from pipeline import store

        path = self.output_dir() / name if name else Path(self.output().path)
        return store.read_json(path) if path.suffix == ".json" else store.read_pickle(path)

    def progress(self, fraction: float, message: str) -> None:
        """Report progress: to the Luigi scheduler (luigid's web page) and to the terminal, from one call.

        Calls are throttled to one a second (fraction 1.0 always passes), so stages may call freely.
        """
        sink = self.__dict__.get("_progress_sink")
        if sink is None:
            sink = self.__dict__["_progress_sink"] = _ProgressSink(self)
        sink(fraction, message)


class _ProgressSink:
    """Feeds one task's progress to the scheduler and to a tqdm line (or a log line when not on a terminal)."""

    def __init__(self, task: luigi.Task) -> None:
        from pipeline.progress import throttled

        self.task = task
        self.bar = None
        self.tty = sys.stderr.isatty()
        self.to_scheduler = throttled(self._scheduler, PROGRESS_INTERVAL)
        self.to_terminal = throttled(self._terminal, PROGRESS_INTERVAL if self.tty else LOG_INTERVAL)

    def __call__(self, fraction: float, message: str) -> None:
        done = fraction >= 1.0
        self.to_scheduler(fraction, message, force=done)
        self.to_terminal(fraction, message, force=done)

    def _scheduler(self, fraction: float, message: str) -> None:
        # Luigi sets these callbacks only inside a worker: task.run() from a Python shell has none.
        if self.task.set_progress_percentage is not None:
            self.task.set_progress_percentage(round(100.0 * fraction, 1))
            self.task.set_status_message(message)

    def _terminal(self, fraction: float, message: str) -> None:
        if not self.tty:
            log.info("%s [%5.1f%%] %s", self.task.task_family, 100.0 * fraction, message)
            return
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=100, desc=self.task.task_family, bar_format="{desc} {percentage:5.1f}% "
                            "|{bar:20}| {elapsed} {postfix}", file=sys.stderr, leave=True)
        self.bar.n = round(100.0 * fraction, 1)
        self.bar.set_postfix_str(message[:100], refresh=True)
        if fraction >= 1.0:
            self.bar.close()
            self.bar = None
