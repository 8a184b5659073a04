"""RenderReport: one self-contained HTML page per run, plus the index of all runs."""
from __future__ import annotations

import logging
from pathlib import Path

from luigi.util import inherits

from tasks.base import PipelineTask
from tasks.data import CleanData
from tasks.config import report_path
from tasks.evaluate import EvaluateCNN
from tasks.explore import ExploreData
from tasks.acquire import FetchMNIST
from tasks.train import TrainCNN

log = logging.getLogger("luigi-interface")


@inherits(EvaluateCNN)
class RenderReport(PipelineTask):
    """Write ``report_dir/<run-id>/report.html`` and ``metrics.json``; point ``latest`` at it."""

    primary = "report.html"

    def run_id(self) -> str:
        """Readable and reproducible: the same parameters give the same run id."""
        limit = f"-n{self.train_limit}" if self.train_limit else ""
        return f"{self.preset}-e{self.epochs}-s{self.seed}{limit}-{self.params_digest()[:8]}"

    def output_dir(self) -> Path:
        return report_path(self.run_id())

    def requires(self):
        return {
            "fetch": FetchMNIST(),
            "clean": self.clone(CleanData),
            "explore": self.clone(ExploreData),
            "train": self.clone(TrainCNN),
            "evaluate": self.clone(EvaluateCNN),
        }

    def run(self):
        from pipeline import report, store
        from pipeline.train.figures import learning_curves

        inputs = {key: self.input_dir(key) for key in self.requires()}
        manifest = store.read_json(self.input()["fetch"].path)
        train_info = store.read_json(inputs["train"] / "train.json")
        history = store.read_json(inputs["train"] / "history.json")
        evaluation = store.read_json(self.input()["evaluate"].path)
        significant = self.to_str_params(only_significant=True)
        # the typed values, so numbers stay numbers in metrics.json
        params = {key: value for key, value in self.param_kwargs.items() if key in significant}

        run_id = self.run_id()
        with store.staged_dir(self.output_dir()) as tmp:
            sections = {}
            for section, stage, summary_file in [("cleaning", "clean", "clean_report.json"),
                                                 ("exploration", "explore", "explore.json"),
                                                 ("evaluation", "evaluate", "evaluation.json")]:
                summary = evaluation if stage == "evaluate" else store.read_json(inputs[stage] / summary_file)
                sections[section] = {**report.collect_section(inputs[stage], summary),
                                     "headline": report.headline(summary)}
            learning_curves(history, tmp / "learning_curves.png")
            sections["training"] = {
                **report.collect_section(tmp, {"figures": [{
                    "file": "learning_curves.png", "title": "Learning curves",
                    "caption": "Loss and accuracy per epoch on the training and validation splits."}]}),
                "headline": report.headline(train_info),
            }
            metrics = report.metrics_record(run_id, params, train_info, evaluation)
            summary_txt = inputs["train"] / "summary.txt"
            html = report.render_report({
                "run_id": run_id,
                "metrics": metrics,
                "manifest_files": sorted(manifest.items()),
                "model_summary": summary_txt.read_text() if summary_txt.exists() else "",
                "history_html": report.history_table(history),
                "command": report.rerun_command(params),
                **sections,
            })
            store.write_json(tmp / "metrics.json", metrics)
            store.write_bytes(tmp / "report.html", html.encode("utf-8"))
        report_dir = self.output_dir().parent
        report.point_latest(report_dir, run_id)
        report.render_index(report_dir)
        log.info("Report: %s (test accuracy %.2f%%)", self.output().path, 100 * metrics["test_accuracy"])
