"""Report pieces: embedding, metrics record, the latest link and the run index."""
from __future__ import annotations

import base64
import os

import pandas as pd
import pytest

from pipeline import report, store

PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def test_png_is_embedded_as_data_uri_and_non_png_is_refused(tmp_path):
    (tmp_path / "a.png").write_bytes(PNG_1PX)
    uri = report.png_data_uri(tmp_path / "a.png")
    assert uri.startswith("data:image/png;base64,") and base64.b64decode(uri.split(",", 1)[1]) == PNG_1PX
    (tmp_path / "b.png").write_text("<html>not a png</html>")
    with pytest.raises(ValueError, match="b.png is not a PNG"):
        report.png_data_uri(tmp_path / "b.png")


def test_collect_section_renders_listed_figures_and_tables(tmp_path):
    (tmp_path / "f.png").write_bytes(PNG_1PX)
    pd.DataFrame({"recall": [0.5, 0.25]}, index=["a", "b"]).to_pickle(tmp_path / "t.pkl")
    section = report.collect_section(tmp_path, {"figures": [{"file": "f.png", "title": "F", "caption": "c"}],
                                                "tables": [{"file": "t.pkl", "title": "T"}]})
    assert [f["title"] for f in section["figures"]] == ["F"]
    assert "<td>0.25</td>" in section["tables"][0]["html"]


def _metrics(run_id: str, created: str, acc: float) -> dict:
    train = {"train_seconds": 1.5, "params_sha256": "ab" * 32, "best_val_accuracy": 0.9}
    record = report.metrics_record(run_id, {"epochs": 2, "seed": 1, "preset": "simple", "train_limit": 0},
                                   train, {"test_accuracy": acc, "n_test": 10})
    record["created"] = created
    return record


def test_metrics_record_has_the_required_fields():
    m = _metrics("r1", "2026-01-01", 0.75)
    for key in ("test_accuracy", "epochs", "seed", "preset", "train_seconds", "params_sha256"):
        assert key in m
    assert m["test_accuracy"] == 0.75 and m["epochs"] == 2


def test_latest_link_moves_and_index_lists_runs_in_order(tmp_path):
    for run_id, created, acc in [("r2", "2026-01-02", 0.5), ("r1", "2026-01-01", 0.25)]:
        store.write_json(tmp_path / run_id / "metrics.json", _metrics(run_id, created, acc))
        report.point_latest(tmp_path, run_id)
    assert os.readlink(tmp_path / "latest") == "r1"
    report.render_index(tmp_path)
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in lines[1:]] == ["r1", "r2"]  # oldest first, latest link skipped
    html = (tmp_path / "index.html").read_text()
    assert html.index("r1/report.html") < html.index("r2/report.html") and "25.00%" in html


def test_rerun_command_reproduces_the_parameters():
    cmd = report.rerun_command({"epochs": 3, "augment": True, "patience": 0, "train_limit": 500})
    assert cmd == ("luigi --module tasks RunPipeline --local-scheduler --augment --epochs 3 "
                   "--patience 0 --train-limit 500")
