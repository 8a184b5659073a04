"""End to end: RunPipeline on a real MNIST subset, then resume behaviour.

One small run (first 3000 training images, 2 epochs, full 10k test set) is
shared by the tests in this file and by the report-page test.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import luigi
import numpy as np

from conftest import storage_at
from pipeline.nn.digest import sha256_arrays

def _all_outputs(root: Path) -> dict[str, int]:
    """mtime of every file under data/ and reports/ (to see which tasks wrote)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns
            for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def test_report_and_metrics_exist_with_the_run_parameters(small_run):
    root, task = small_run
    run_dirs = [p for p in (root / "reports").iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(run_dirs) == 1
    run_dir = run_dirs[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["seed"] == 7 and metrics["preset"] == "simple"
    assert metrics["train_limit"] == 3000
    assert metrics["train_seconds"] > 0
    assert metrics["n_test"] == 10000  # train_limit never shrinks the test set
    # Well above chance (10%): a 2-epoch SimpleConvNet on 2.7k images reaches about 90%.
    assert metrics["test_accuracy"] > 0.80
    assert (root / "reports" / "latest").resolve() == run_dir.resolve()
    html = (run_dir / "report.html").read_text()
    assert f"{100 * metrics['test_accuracy']:.2f}%" in html
    assert "index.html" in os.listdir(root / "reports")
    assert metrics["run_id"] in (root / "reports" / "index.html").read_text()


def test_params_sha256_matches_the_saved_model_and_loads_with_plain_pickle(small_run):
    root, _ = small_run
    metrics = json.loads((root / "reports" / "latest" / "metrics.json").read_text())
    (model_pkl,) = (root / "data" / "models").glob("*/model.pkl")
    with open(model_pkl, "rb") as fh:
        saved = pickle.load(fh)  # plain dict of builtins and ndarrays
    assert isinstance(saved["params"], dict) and saved["spec"]
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in saved["params"].values())
    assert sha256_arrays(saved["params"]) == metrics["params_sha256"]


def test_prepared_split_is_disjoint_stratified_and_normalized(small_run):
    root, _ = small_run
    (data_pkl,) = (root / "data" / "processed").glob("*/data.pkl")
    with open(data_pkl, "rb") as fh:
        data = pickle.load(fh)
    assert data["x_train"].dtype == np.float32 and data["x_train"].shape[1:] == (1, 28, 28)
    assert len(data["x_train"]) + len(data["x_val"]) <= 3000
    assert not set(data["train_source_index"]) & set(data["val_source_index"])
    assert data["x_test"].shape == (10000, 1, 28, 28)
    assert 0.0 == data["x_train"].min() and data["x_train"].max() == 1.0


def test_second_run_does_nothing(small_run):
    root, task = small_run
    before = _all_outputs(root)
    with storage_at(root):
        result = luigi.build([task], local_scheduler=True, detailed_summary=True, log_level="WARNING")
    assert result.scheduling_succeeded
    assert "complete ones were encountered" in result.summary_text
    assert "ran successfully" not in result.summary_text
    assert _all_outputs(root) == before


def test_deleting_the_evaluation_reruns_only_evaluation_and_report(small_run):
    root, task = small_run
    (evaluation,) = (root / "data" / "eval").glob("*/result.json")
    (model,) = (root / "data" / "models").glob("*/model.pkl")
    (explore,) = (root / "data" / "explore").glob("*/result.json")
    report = root / "reports" / "latest" / "report.html"
    stamps = {p: p.stat().st_mtime_ns for p in (model, explore, report.resolve())}
    evaluation.unlink()
    with storage_at(root):
        result = luigi.build([task], local_scheduler=True, detailed_summary=True, log_level="WARNING")
    assert result.scheduling_succeeded
    assert "EvaluateCNN" in result.summary_text and "RenderReport" in result.summary_text
    assert evaluation.exists()
    assert model.stat().st_mtime_ns == stamps[model]  # training was not redone
    assert explore.stat().st_mtime_ns == stamps[explore]
    assert report.resolve().stat().st_mtime_ns > stamps[report.resolve()]
