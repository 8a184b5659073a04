"""The base class every pipeline task derives from.

Each task writes one output directory, built under a staging name and swapped
in atomically; what goes in it is the :class:`pipeline.result.StageResult` its
stage returns, written by :meth:`PipelineTask.write_result` and sealed by an
integrity manifest (the sha256 of every file, the task's parameters, the digest
of the code that made it, its inputs and provenance).

A task is complete only when its manifest is readable and lists files that are
all there, its parameters and code digest are those of the current checkout,
it is no older than the outputs of the tasks it requires, and those are
complete too. Deleting an intermediate therefore reruns that task and
everything downstream of it, as ``make`` would; so does a semantic change to
the code a task runs (comments, formatting and docstrings do not count); an
untouched pipeline is a no-op. :meth:`PipelineTask.stale_reasons` says why a
task would run.
"""
from __future__ import annotations

import datetime as dt
import functools
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

_LOGGED: set[str] = set()
PROGRESS_INTERVAL = 1.0  # seconds between scheduler updates and terminal redraws
LOG_INTERVAL = 10.0  # seconds between progress lines when stderr is a log file, not a terminal


def flatten(struct: Any) -> list:
    """The leaves of a nested dict/list/tuple structure (Luigi's requires() and output() shapes)."""
    if isinstance(struct, dict):
        return [t for v in struct.values() for t in flatten(v)]
    if isinstance(struct, (list, tuple)):
        return [t for v in struct for t in flatten(v)]
    return [] if struct is None else [struct]


class ReportsProgress:
    """Mixin: ``self.progress(fraction, message)`` reaches the Luigi scheduler (luigid's web page) and
    the terminal from one call; calls are throttled to one a second (fraction 1.0 always passes), so
    stages may call freely."""

    def progress(self, fraction: float, message: str) -> None:
        sink = self.__dict__.get("_progress_sink")
        if sink is None:
            sink = self.__dict__["_progress_sink"] = _ProgressSink(self)
        sink(fraction, message)


def show_pipeline_logs() -> None:
    """Show the pipeline's own log lines (mirror attempts, resumes, swept debris) beside Luigi's.

    Luigi configures only its own loggers; this adds one handler to the ``pipeline`` logger, once,
    unless the user's logging configuration already gave it one.
    """
    logger = logging.getLogger("pipeline")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


@luigi.Task.event_handler(luigi.Event.START)
def _show_logs_when_a_task_starts(task: luigi.Task) -> None:
    show_pipeline_logs()


OUTPUT_LOCK_TIMEOUT = 6 * 3600.0  # seconds a run waits for another run making the same output


def _one_maker_at_a_time(run):
    """``run`` under a lock on its output, and skipped when another run made the output while this one
    waited for the lock.

    Two runs with different parameters share their upstream outputs (one CleanData for every
    seed): the second waits, says so, and reuses what the first made, instead of making it again
    and so making the first run's later inputs look stale.
    """
    @functools.wraps(run)
    def locked_run(self):
        from pipeline.store import lock

        out = self.output_dir()

        def waiting(seconds: float) -> None:
            log.info("%s: another run is making %s; waiting for it (%.0f s)", self.task_family, out, seconds)
            self.progress(0.0, f"waiting for another run making {out.name} ({seconds:.0f} s)")

        with lock.exclusive(out.parent / f".{out.name}.lock", OUTPUT_LOCK_TIMEOUT, waiting) as waited:
            if waited and self.complete():
                log.info("%s: made by another run while this one waited; reusing it", self.task_id)
                return None
            return run(self)

    locked_run.one_maker_at_a_time = True
    return locked_run


class PipelineTask(ReportsProgress, luigi.Task):
    """A task with one output directory under ``data_dir/<stage>/<slug>``.

    Subclasses set ``stage`` (a folder name under the data directory) and
    ``primary`` (the file inside the output directory that ``output()`` names and
    ``output_load()`` loads) and implement ``run``.
    """

    stage: str = ""
    primary: str = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is not None and not getattr(run, "one_maker_at_a_time", False):
            cls.run = _one_maker_at_a_time(run)  # every task's run() holds its output's lock

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

    def manifest_path(self) -> Path:
        """The integrity manifest of this task's output, written last: its existence marks completion."""
        from pipeline.store.manifest import MANIFEST_FILE

        return self.output_dir() / MANIFEST_FILE

    @classmethod
    def code_digests(cls) -> dict[str, str]:
        """{name: AST digest} of the code this task runs: its class, its base classes, and every
        module of ``pipeline`` these import, transitively (see :mod:`pipeline.store.code`)."""
        from pipeline.store.code import class_code

        return class_code(cls)

    def stale_reasons(self) -> list[str]:
        """Why this task would run, in words; empty when its output is up to date.

        Reasons: missing output, an unreadable manifest or a file it lists missing, changed
        parameters, changed code (naming the modules), an input rebuilt after this output. A file
        whose bytes changed is not a reason to rebuild quietly: loading it fails, naming the file
        (``mnist-pipeline ls`` checks every hash).
        """
        from pipeline import store
        from pipeline.store.code import changed_modules

        marker = self.manifest_path()
        if not marker.exists():
            return ["missing output" if not self.output_dir().exists() else f"missing output: no {marker.name}"]
        try:
            manifest = store.read_manifest(self.output_dir())
        except store.IntegrityError as exc:
            return [f"unreadable output: {exc}"]
        reasons = [f"incomplete output: {name} is listed in {marker.name} but missing"
                   for name in store.missing_files(self.output_dir(), manifest)]
        if not Path(self.output().path).exists():
            reasons.append(f"incomplete output: no {self.primary}")
        params = self.to_str_params(only_significant=True)
        if manifest.get("params") != params:
            old = manifest.get("params") or {}
            keys = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
            reasons.append("changed parameters: " + ", ".join(keys))
        changed = changed_modules(manifest.get("code", {}).get("modules", {}), self.code_digests())
        if changed:
            reasons.append("changed code: " + ", ".join(changed))
        mtime = marker.stat().st_mtime_ns
        for dep in flatten(self.requires()):
            for path in _completion_markers(dep):
                if path.exists() and path.stat().st_mtime_ns > mtime:
                    reasons.append(f"newer input: {dep.task_id} was rebuilt after this output")
        return reasons

    def complete(self) -> bool:
        if any(not dep.complete() for dep in flatten(self.requires())):
            return False
        reasons = self.stale_reasons()
        if reasons and self.output_dir().exists():
            message = f"{self.task_id} is stale: " + "; ".join(reasons)
            if message not in _LOGGED:  # complete() is asked many times per run: say it once
                _LOGGED.add(message)
                log.info(message)
        return not reasons

    def input_dir(self, key: str | None = None) -> Path:
        """The output directory of a required task (by key when requires() is a dict)."""
        target = self.input()[key] if key is not None else self.input()
        return Path(target.path).parent

    def manifest_record(self) -> dict[str, Any]:
        """What the manifest records of how this output was made (its files are added by the writer)."""
        from pipeline import store
        from pipeline.store.code import combined_digest
        from pipeline.store.provenance import environment

        digests = self.code_digests()
        inputs = {}
        for dep in flatten(self.requires()):
            for path in _completion_markers(dep):
                inputs[dep.task_id] = {"path": str(path), "sha256": store.sha256_file(path)}
        return {
            "task": self.task_family,
            "task_id": self.task_id,
            "params": self.to_str_params(only_significant=True),
            "code": {"digest": combined_digest(digests), "modules": digests},
            "inputs": inputs,
            "provenance": environment(),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def write_result(self, result) -> None:
        """Write a stage's :class:`~pipeline.result.StageResult` as this task's output directory, atomically,
        sealed by its manifest; first remove what killed runs left in the stage's directory."""
        from pipeline import store
        from pipeline.result import write_result
        from pipeline.store.debris import sweep

        sweep(self.output_dir().parent)
        record = self.manifest_record()
        with store.staged_dir(self.output_dir()) as tmp:
            write_result(result, tmp, record)

    def load_input(self, key: str | None = None, name: str | None = None) -> Any:
        """A required task's output file, verified against its manifest before it is parsed or unpickled:
        its primary file by default, or ``name`` in its directory (by ``key`` when requires() is a dict)."""
        from pipeline import store

        target = self.input()[key] if key is not None else self.input()
        path = Path(target.path).parent / name if name else Path(target.path)
        return store.read_verified(path)

    def output_load(self, name: str | None = None) -> Any:
        """A file of this task's output, verified and loaded: the primary one by default (one line in a
        Python shell): ``from tasks import PrepareData; data = PrepareData(train_limit=3000).output_load()``
        """
        from pipeline import store

        return store.read_verified(self.output_dir() / name if name else Path(self.output().path))


def _completion_markers(task: luigi.Task) -> list[Path]:
    """The files whose modification time says when ``task``'s output was last (re)built."""
    if isinstance(task, PipelineTask):
        return [task.manifest_path()]
    return [Path(t.path) for t in flatten(task.output())]


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
            self.bar = tqdm(total=100, bar_format="{percentage:5.1f}% |{bar:20}| {elapsed} {desc}",
                            file=sys.stderr, leave=True)
        self.bar.n = round(100.0 * fraction, 1)
        self.bar.set_description_str(f"{self.task.task_family}: {message[:100]}", refresh=True)
        if fraction >= 1.0:
            self.bar.close()
            self.bar = None
