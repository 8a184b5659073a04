"""RenderReport: one self-contained HTML page per run (pipeline.report); RunIndex: the index of all runs."""
from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

import luigi
import luigi.interface
from luigi.util import inherits

from pipeline.report.files import INDEX_FILE, METRICS_FILE, REPORT_FILE
from tasks.acquire import FetchMNIST
from tasks.base import PipelineTask
from tasks.config import data_path, report_path, run_id
from tasks.data import CleanData
from tasks.evaluate import EvaluateCNN
from tasks.explore import ExploreData
from tasks.train import NeutralDefaults, TrainCNN, model_name

log = logging.getLogger("luigi-interface")


@inherits(EvaluateCNN)
class RenderReport(NeutralDefaults, PipelineTask):
    """Write ``report_dir/<run-id>/``: report.html and metrics.json (and the integrity manifest).

    The page shows acquisition from FetchMNIST's manifest, then every stage from its
    result.json, in the order of :meth:`requires`, whose keys are the page's section ids. An
    ensemble's training section is its member 0's; the evaluation section shows every member.
    It opens with a comparison with the other runs of the report directory as they are when it
    is rendered (a later run does not make it stale), and ends with the run's provenance.
    """

    primary = REPORT_FILE

    def run_id(self) -> str:
        """Readable and reproducible: the same parameters give the same run id (``-k5`` for an ensemble of 5)."""
        return run_id(model_name(self, ensemble=self.ensemble), self.params_digest())

    def output_dir(self) -> Path:
        return report_path(self.run_id())

    def requires(self):
        return {
            "acquisition": FetchMNIST(),
            "cleaning": self.clone(CleanData),
            "exploration": self.clone(ExploreData),
            "training": self.clone(TrainCNN),  # member 0: the single model, or the ensemble's first
            "evaluation": self.clone(EvaluateCNN),
        }

    @classmethod
    def code_digests(cls) -> dict[str, str]:
        """The code of the task and its modules, and the page's template: an edited template re-renders."""
        from pipeline.report.page import PAGE_TEMPLATE
        from pipeline.report.render import template_digest

        return {**super().code_digests(), f"pipeline.report.templates/{PAGE_TEMPLATE}": template_digest(PAGE_TEMPLATE)}

    def stale_reasons(self) -> list[str]:
        reasons = super().stale_reasons()
        if not reasons and not (self.output_dir() / METRICS_FILE).exists():
            reasons.append(f"incomplete output: no {METRICS_FILE}")
        return reasons

    def parameters(self) -> dict[str, Any]:
        """The significant parameters with their typed values (numbers stay numbers in metrics.json)."""
        significant = self.to_str_params(only_significant=True)
        return {key: value for key, value in self.param_kwargs.items() if key in significant}

    def training_threads(self) -> int | None:
        """The BLAS thread count every model of the run was trained on, as their manifests record it; None
        (with a warning) when members were trained on different counts, which no one command reproduces."""
        from pipeline.store import read_manifest
        from pipeline.store.provenance import blas_threads

        counts = [blas_threads(read_manifest(t.output_dir()).get("provenance") or {})
                  for t in self.requires()["evaluation"].requires()["models"]]
        if len(set(counts)) == 1:
            return counts[0]
        log.warning("RenderReport: the members were trained on different BLAS thread counts (%s), so the "
                    "rerun command reproduces their accuracy but not their bits", counts)
        return None

    def run(self):
        from pipeline import store
        from pipeline.report.page import run_report, write_run_report
        from pipeline.store.debris import sweep

        stages = {key: self.input_dir(key) for key in self.requires() if key != "acquisition"}
        record = self.manifest_record()  # how the report is made: in its manifest and in metrics.json
        sweep(self.output_dir().parent)
        command = rerun_command(self, blas_threads=self.training_threads(), workers=luigi.interface.core().workers)
        report = run_report(self.run_id(), self.parameters(), command,
                            store.read_json(self.input()["acquisition"].path), stages,
                            report_dir=self.output_dir().parent, data_dir=data_path(), record=record)
        with store.staged_dir(self.output_dir()) as tmp:
            write_run_report(report, tmp, record)
        log.info("Report: %s (test accuracy %.2f%%)", self.output().path, 100 * report.metrics["test_accuracy"])


@inherits(RenderReport)
class RunIndex(NeutralDefaults, luigi.Task):
    """Write ``report_dir/index.html`` and ``history.csv`` (every run's metrics) and point
    ``report_dir/latest`` at this run.

    Complete when the run's report is, the index lists this run, ``latest`` exists, and the
    index is no older than the report (a regenerated report is indexed again).
    """

    def requires(self):
        return self.clone(RenderReport)

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(report_path(INDEX_FILE)))

    def complete(self) -> bool:
        from pipeline.report.index import index_lists

        report = self.requires()
        if not report.complete() or not index_lists(report_path(), report.run_id()):
            return False
        return Path(self.output().path).stat().st_mtime_ns >= report.manifest_path().stat().st_mtime_ns

    def run(self):
        from pipeline.report.index import update_index

        update_index(report_path(), self.requires().run_id())


def rerun_command(task: luigi.Task, blas_threads: int | None = None, workers: int = 1) -> str:
    """The luigi command line that regenerates ``task``'s run: every significant parameter of
    RunPipeline, with ``task``'s value, in Luigi's own string form, quoted for a POSIX shell.

    With ``blas_threads`` it starts ``env OPENBLAS_NUM_THREADS=N``: the engine's kernels, and so the
    models' bits, depend on the thread count they trained on, which ``--workers`` and the machine's cores
    decide (tasks/cores.py) and no parameter records; the variable fixes it whatever those are. ``env``
    keeps the line a plain argument list (no shell needed). ``--workers N`` (N > 1) is kept for speed.
    """
    from luigi.task_register import Register

    from tasks.run import RunPipeline  # tasks.run imports this module

    # Luigi first parses the command line without the task's own flags, and argparse then takes a flag
    # that begins another flag's name as its abbreviation (--schedule -> --scheduler-*): such a
    # parameter is given in its qualified form, --RunPipeline-schedule.
    global_flags = {"--" + (name if bare else f"{family}_{name}").replace("_", "-")
                    for family, bare, name, _ in Register.get_all_params()}
    parts = (["env", f"OPENBLAS_NUM_THREADS={blas_threads}"] if blas_threads else []) + [
        "luigi", "--module", "tasks", "RunPipeline", "--local-scheduler"] + (
        ["--workers", str(workers)] if workers > 1 else [])
    for name, param in sorted(RunPipeline.get_params()):
        if not param.significant:
            continue
        flag, value = "--" + name.replace("_", "-"), getattr(task, name)
        if any(other.startswith(flag) for other in global_flags):
            flag = "--" + f"RunPipeline_{name}".replace("_", "-")
        if isinstance(param, luigi.BoolParameter):
            if param.parsing == luigi.BoolParameter.IMPLICIT_PARSING:
                parts += [flag] if value else []  # store_true: absent is the only way to say False
            else:
                parts += [flag, param.serialize(value).lower()]  # "--augment false", as the flag's help says
        else:
            parts += [flag, param.serialize(value)]
    return " ".join(shlex.quote(p) for p in parts)
