"""Nightly: the dated entry point for cron, ``luigi --module tasks Nightly --date YYYY-MM-DD``.

A night checks every configured mirror, runs the pipeline (reusing what is cached,
rebuilding what changed code, parameters or data require), and writes
``report_dir/nightly/<date>/``: the run's report, ``nightly.html``, ``nightly.json`` (the
record: fingerprint, mirror health, comparison with the previous night, gate verdict) and,
when the night passes, ``metrics.json``. A night fails (Luigi's task_failed exit code) when
the regression gate finds a reason (see :func:`pipeline.nightly.compare.gate_failures`).

Backfill with Luigi's own range tool: ``luigi --module tasks RangeDailyBase --of Nightly
--start 2026-11-01 --stop 2026-11-08 --of-params '{"epochs": 12}'`` (``--stop`` is exclusive; the
range reaches back only ``--days-back`` days, 100 by default: older dates are skipped silently).
Nights run oldest first (see :attr:`Nightly.priority`).
"""
from __future__ import annotations

import contextlib
import copy
import datetime as dt
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import luigi
from luigi.tools.range import RangeDailyBase  # noqa: F401  (registers it for `--module tasks`)

from pipeline.store.debris import process_start
from tasks.acquire import FetchMNIST
from tasks.base import PipelineTask, ReportsProgress, flatten
from tasks.config import data_path, report_path
from tasks.report import RenderReport, RunIndex
from tasks.run import RunPipeline
from tasks.train import NeutralDefaults, TrainCNN

log = logging.getLogger("luigi-interface")



class nightly(luigi.Config):  # noqa: N801 - Luigi names config sections after the class
    """``[nightly]``: the regression gate."""

    tolerance = luigi.FloatParameter(default=0.002, description="accuracy drop (fraction, 0.002 = 0.2 points) "
                                     "tolerated against the previous night and the baseline")
    baseline_accuracy = luigi.FloatParameter(default=0.0, description="pinned test accuracy a night must reach "
                                             "(minus the tolerance); 0 = none")


class NightFailed(RuntimeError):
    """The regression gate failed the night; the message lists every reason."""


def night_dir(date: dt.date) -> Path:
    from pipeline.nightly.record import NIGHTLY_DIR

    return report_path(NIGHTLY_DIR, date.isoformat())


class MirrorHealth(ReportsProgress, luigi.Task):
    """Write ``data_dir/nightly/<date>/mirrors.json``: the health of every mirror FetchMNIST is configured with."""

    date = luigi.DateParameter(description="the night")

    def output(self) -> luigi.LocalTarget:
        from pipeline.nightly.record import HEALTH_FILE, NIGHTLY_DIR

        return luigi.LocalTarget(str(data_path(NIGHTLY_DIR, self.date.isoformat(), HEALTH_FILE)))

    def complete(self) -> bool:
        """Done when that night's check exists and covers exactly the mirrors configured now.

        (A night that fails discards its check, see :meth:`Nightly.run`, so a rerun checks again.)
        """
        from pipeline import store

        try:
            health = store.read_json(self.output().path)
        except (OSError, ValueError):
            return False
        return health.get("checked") == [str(m) for m in FetchMNIST().mirrors]

    def run(self):
        from pipeline import store
        from pipeline.nightly.health import check_mirrors

        fetch = FetchMNIST()
        earlier = sorted(p for p in Path(self.output().path).parents[1].glob(f"*/{Path(self.output().path).name}")
                         if p.parent.name < self.date.isoformat())
        previous = store.read_json(earlier[-1]) if earlier else None
        health = check_mirrors(list(fetch.mirrors), previous, today=self.date.isoformat(),
                               connect_timeout=fetch.connect_timeout, read_timeout=fetch.read_timeout,
                               progress=self.progress)
        store.write_json(self.output().path, health)


def _with_pipeline_parameters(cls):
    """Give ``cls`` every parameter of RunPipeline, as keyword-only flags.

    Like ``luigi.util.inherits``, but non-positional: the night's ``date`` stays the first
    positional parameter, which is what Luigi's RangeDailyBase fills in.
    """
    for name, param in RunPipeline.get_params():
        keyword_only = copy.copy(param)
        keyword_only.positional = False
        setattr(cls, name, keyword_only)
    return cls


@_with_pipeline_parameters
class Nightly(NeutralDefaults, ReportsProgress, luigi.Task):
    """One dated night: mirror health, the pipeline, the comparison and the regression gate.

    A pipeline parameter added later, at its neutral default, leaves the night's task id unchanged
    (:class:`~tasks.train.NeutralDefaults`), so luigid's history of a night stays one task.
    """

    date = luigi.DateParameter(default=dt.date.today(), description="the night, YYYY-MM-DD (default: today)")
    recheck = luigi.BoolParameter(default=False, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
                                  description="also retrain from scratch in a scratch directory and require "
                                              "the very same parameters, bit for bit, as the cached model")

    @property
    def priority(self) -> float:
        """Oldest night first when several are scheduled at once (a backfill), so that each is compared
        with the night before it; without it Luigi runs the newest first. Within (0, 1) whatever the
        date: above Luigi's default 0 (which is also its floor: lower priorities count as 0), below a
        priority of 1 or more that a user sets."""
        return 1.0 - self.date.toordinal() / 1e7

    def requires(self):
        return {"mirrors": MirrorHealth(date=self.date), "index": self.clone(RunIndex)}

    def output(self) -> luigi.LocalTarget:
        from pipeline.report.files import METRICS_FILE

        return luigi.LocalTarget(str(night_dir(self.date) / METRICS_FILE))

    def complete(self) -> bool:
        """Done when that date's night passed with these very parameters (the same run id).

        Asked again with other parameters, the night runs again and replaces that date's folder; so
        parameters the pipeline refuses are refused (a scheduling error) even on a date that passed,
        instead of the old night answering for the new request.
        """
        from pipeline import store

        run_id = self.clone(RenderReport).run_id()
        try:
            return store.read_json(self.output().path).get("run_id") == run_id
        except (OSError, ValueError, AttributeError):
            return False

    def run(self):
        from pipeline import store
        from pipeline.nightly import record as night
        from pipeline.nightly.compare import compare_nights, gate_failures

        report = self.clone(RenderReport)
        metrics = store.read_verified_json(report.output_dir() / "metrics.json")
        manifests = {t.task_family: store.read_manifest(t.output_dir())
                     for t in _pipeline_tasks(report) if isinstance(t, PipelineTask)}
        current = {
            "date": self.date.isoformat(), "run_id": report.run_id(), "metrics": metrics,
            "fingerprint": night.fingerprint(manifests, metrics["parameters"],
                                             store.read_json(FetchMNIST().output().path)),
            "mirror_health": store.read_json(self.input()["mirrors"].path),
            "recheck": self.recheck_models() if self.recheck else None,
        }
        previous = night.previous_night(night_dir(self.date).parent, self.date.isoformat())
        current["wall_seconds"] = _command_seconds()
        current["comparison"] = compare_nights(current, previous)
        cfg = nightly()
        current["failures"] = gate_failures(current, previous, tolerance=cfg.tolerance,
                                            baseline=cfg.baseline_accuracy or None)
        current["status"] = "failed" if current["failures"] else "passed"
        self.write_night(current, report.output_dir())
        if current["failures"]:
            # The night's record keeps this mirror check; the cached one goes, so that a rerun of the
            # night (after a bad mirror was fixed or removed) checks the mirrors again.
            Path(self.input()["mirrors"].path).unlink(missing_ok=True)
            raise NightFailed(f"night {self.date} failed the regression gate: " + "; ".join(current["failures"]))
        log.info("Night %s passed: %s, test accuracy %.2f%%, %s", self.date, report.run_id(),
                 100 * metrics["test_accuracy"], "same model as the previous night"
                 if current["comparison"].get("same_model") else "model changed or no previous night")

    def recheck_models(self) -> dict:
        """Retrain every model of the run (each ensemble member) from scratch in a scratch directory and
        compare its parameters bit for bit with the cached one's.

        Each retrains on the BLAS thread count its manifest records: the engine's kernels, and with them
        a model's bits, depend on it, and it depends on ``--workers`` when the model was trained (a
        member trained by one of two workers ran on half the cores; tasks/cores.py).
        """
        from pipeline import store
        from pipeline.nn.kernels.parallel import limited_to
        from pipeline.result import RESULT_FILE
        from pipeline.store.provenance import blas_threads
        from pipeline.train.stage import train_stage

        started, members = time.monotonic(), []
        for member in range(self.ensemble):
            train = self.clone(TrainCNN, member=member)
            cached = train.output_load(RESULT_FILE)["summary"]["params_sha256"]
            threads = blas_threads(store.read_manifest(train.output_dir()).get("provenance") or {})
            data = train.requires().output_load()  # the prepared splits, verified
            scratch = Path(tempfile.mkdtemp(prefix=".recheck-", dir=data_path()))
            try:
                with limited_to(threads) if threads else contextlib.nullcontext():
                    result = train_stage(data, self.preset, train.train_config(), scratch, progress=self.progress)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            members.append({"member": member, "threads": threads, "params_sha256": result.summary["params_sha256"],
                            "cached_params_sha256": cached})
        return {"members": members, "seconds": time.monotonic() - started,
                "identical": all(m["params_sha256"] == m["cached_params_sha256"] for m in members)}

    def write_night(self, record: dict, run_report_dir: Path) -> None:
        """``report_dir/nightly/<date>/``, built whole and swapped in: report, page, record, metrics if passed."""
        from pipeline import store
        from pipeline.nightly.page import relocated_report, render_night
        from pipeline.nightly.record import HEALTH_FILE, PAGE_FILE, RECORD_FILE
        from pipeline.report.files import METRICS_FILE, REPORT_FILE

        with store.staged_dir(night_dir(self.date)) as tmp:
            page = (run_report_dir / REPORT_FILE).read_text(encoding="utf-8")
            store.write_bytes(tmp / REPORT_FILE, relocated_report(page).encode("utf-8"))
            store.write_json(tmp / HEALTH_FILE, record["mirror_health"])
            store.write_bytes(tmp / PAGE_FILE, render_night(record).encode("utf-8"))
            store.write_json(tmp / RECORD_FILE, record)
            if record["status"] == "passed":
                store.write_json(tmp / METRICS_FILE, {**record["metrics"], "nightly": {
                    "date": record["date"], "comparison": record["comparison"], "status": record["status"]}})
            store.write_manifest(tmp, {"task": self.task_family, "task_id": self.task_id})


def _pipeline_tasks(root: luigi.Task) -> list[luigi.Task]:
    """Every task in ``root``'s tree, each once."""
    seen, todo = {}, [root]
    while todo:
        task = todo.pop()
        if task.task_id not in seen:
            seen[task.task_id] = task
            todo.extend(flatten(task.requires()))
    return list(seen.values())


# When the luigi command started, taken when `--module tasks` imports this module, in the command's
# own process: worker processes that Luigi forks (--workers N) inherit it.
_COMMAND_STARTED = process_start(os.getpid()) or time.time()


def _command_seconds() -> float:
    """Seconds since the luigi command started (a backfill's nights share one command: each counts
    from its start)."""
    return time.time() - _COMMAND_STARTED
