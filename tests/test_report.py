"""Report pieces: embedding, generic stage rendering, the metrics record, the run index and its task,
and the command line that regenerates a run."""
from __future__ import annotations

import base64
import csv
import os
import re
import shlex

import numpy as np
import pandas as pd
import pytest

from pipeline import store
from pipeline.report import index, page
from pipeline.report.metrics import metrics_record

PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def test_png_is_embedded_as_data_uri_and_non_png_is_refused():
    uri = page.png_data_uri(PNG_1PX, "a.png")
    assert uri.startswith("data:image/png;base64,") and base64.b64decode(uri.split(",", 1)[1]) == PNG_1PX
    with pytest.raises(ValueError, match="b.png is not a PNG"):
        page.png_data_uri(b"<html>not a png</html>", "b.png")


def _stage(title: str, summary: dict, **extra):
    """A small StageResult with a headline, a table (one NaN cell), a figure and a text."""
    from pipeline.figures import new_figure
    from pipeline.result import Figure, StageResult, Table

    fig = new_figure(3, 2)
    fig.add_subplot().plot([0, 1], [1, 0])
    frame = pd.DataFrame({"recall": [0.5, 0.25, np.nan]}, index=pd.Index(["a", "b", "c"], name="digit"))
    return StageResult(
        title=title, summary=summary,
        headline=[("Images kept", 59_000), ("Share dropped", "1.67%"), ("Mean ink", 0.1234567891)],
        tables=[Table("t", "Recall per digit", frame),
                Table("pairs", "Plain rows", pd.DataFrame({"true": [4], "predicted": [9]}))],
        figures=[Figure("f", "Falling line", "The line falls from 1 to 0.", fig)],
        texts={"model_summary": "Conv 5x5 -> ReLU\n<not a tag>"}, **extra)


def test_stage_section_renders_any_stage_from_its_result(tmp_path):
    from pipeline.result import write_result

    write_result(_stage("Cleaning", {"kept": 59_000}), tmp_path)
    section = page.stage_section("cleaning", tmp_path)
    assert section["id"] == "cleaning" and section["title"] == "Cleaning"
    assert section["headline"] == [("Images kept", "59,000"), ("Share dropped", "1.67%"), ("Mean ink", "0.123457")]
    assert [f["title"] for f in section["figures"]] == ["Falling line"]
    assert section["figures"][0]["caption"] == "The line falls from 1 to 0."
    assert section["figures"][0]["uri"].startswith("data:image/png;base64,iVBOR")
    html = section["tables"][0]["html"]
    assert "<td>0.25</td>" in html and "NaN" not in html and "nan" not in html
    assert "<td>–</td>" in html  # a missing value (an empty calibration bin) is a dash
    assert "<th>digit</th>" in html and html.count("<tr") == 4  # the named index is a column: one header row
    assert "<th>0</th>" not in section["tables"][1]["html"]  # a plain 0..n-1 index is not shown
    assert section["texts"] == [{"title": "Model summary", "text": "Conv 5x5 -> ReLU\n<not a tag>"}]


def test_stage_section_refuses_a_changed_figure(tmp_path):
    from pipeline.result import write_result

    write_result(_stage("Cleaning", {}), tmp_path)
    (tmp_path / "f.png").write_bytes(PNG_1PX)  # not the bytes the manifest recorded
    with pytest.raises(store.IntegrityError, match="f.png was changed"):
        page.stage_section("cleaning", tmp_path)


TRAIN = {"train_seconds": 1.5, "params_sha256": "ab" * 32, "best_val_accuracy": 0.9, "epochs_run": 2}
EVALUATION = {"test_accuracy": 0.8765, "ci95": [0.85, 0.9], "n_errors": 1234, "n_test": 10000, "ece": 0.01}
PARAMS = {"epochs": 2, "seed": 1, "preset": "simple", "train_limit": 0, "augment": False}
MANIFEST = {name: {"mirror": "data/mirror/mnist", "bytes": 1000 + i, "sha256_content": f"{i}" * 64,
                   "seconds": 0.25, "failed_attempts": [{"mirror": "x", "error": "boom"}] * i}
            for i, name in enumerate(["t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz"])}


def test_run_report_shows_every_stage_and_writes_page_and_metrics(tmp_path):
    from pipeline.result import write_result

    stages = {}
    for key, title, summary in [("cleaning", "Cleaning", {}), ("training", "Training", TRAIN),
                                ("evaluation", "Evaluation", EVALUATION)]:
        stages[key] = tmp_path / key
        write_result(_stage(title, summary), stages[key])
    report = page.run_report("run-1", PARAMS, "luigi --augment false", MANIFEST, stages)
    html = report.html
    # the sections in page order, each with its headline, figure and caption, table and text
    ids = re.findall(r'<section id="([a-z]+)"', html)
    assert ids == ["summary", "comparison", "acquisition", "cleaning", "training", "evaluation", "provenance",
                   "parameters"]
    assert html.count("<dt>Images kept</dt><dd>59,000</dd>") == 3
    assert html.count("The line falls from 1 to 0.") == 3 and html.count('src="data:image/png;base64,') == 3
    assert html.count("<h3>Recall per digit</h3>") == 3 and html.count("&lt;not a tag&gt;</pre>") == 3
    # acquisition from the fetch manifest
    assert "train-images-idx3-ubyte.gz" in html and "1,001" in html and "<dt>Failed attempts</dt><dd>1</dd>" in html
    assert 'id="test-accuracy">87.65%<' in html and "1,234 misclassified" in html
    assert '<pre id="rerun-command"><span>luigi</span> <span>--augment</span> <span>false</span></pre>' in html
    assert "http://" not in html and "https://" not in html  # self-contained
    m = report.metrics
    assert m["rerun_command"] == "luigi --augment false" and m["test_accuracy"] == 0.8765
    assert m["params_sha256"] == TRAIN["params_sha256"] and m["parameters"] == PARAMS
    # provenance: the stages' manifests (these were written without a task record) and the raw files' hashes
    assert [s["stage"] for s in m["provenance"]["stages"]] == ["cleaning", "training", "evaluation"]
    assert m["provenance"]["data"]["train-images-idx3-ubyte.gz"]["sha256_content"] == "1" * 64
    assert m["provenance"]["environment"]["python"] and "numpy" in m["provenance"]["environment"]["libraries"]
    assert "built outside a report directory" in html  # no report directory given: compared with nothing

    out = tmp_path / "out"
    path = page.write_run_report(report, out, {"task": "T"})
    assert path == out / "report.html" and path.read_text() == html
    assert store.read_verified(out / "metrics.json") == m
    assert set(store.read_manifest(out)["files"]) == {"report.html", "metrics.json"}


def test_run_report_of_an_ensemble_shows_it_and_its_members(tmp_path):
    from pipeline.result import write_result

    rows = [{"member": i, "seed": 1 + i, "best_epoch": 2, "epochs_run": 2, "best_val_accuracy": 0.9,
             "test_accuracy": 0.85, "test_errors": 1500, "train_seconds": 1.5, "params_sha256": c * 64}
            for i, c in enumerate("abc")]
    evaluation = {**EVALUATION, "ensemble": 3, "members": rows, "val_accuracy": 0.95, "model_params_sha256": "e" * 64}
    stages = {}
    for key, title, summary in [("training", "Training", {**TRAIN, "seed": 1}),
                                ("evaluation", "Evaluation: ensemble of 3 members", evaluation)]:
        stages[key] = tmp_path / key
        write_result(_stage(title, summary), stages[key])
    report = page.run_report("run-k3", {**PARAMS, "ensemble": 3}, "luigi --ensemble 3", MANIFEST, stages)
    html = report.html
    assert '<b id="ensemble">ensemble of 3</b> (seeds 1&ndash;3)' in html
    assert "<h2>Training: member 0 of 3 (seed 1; the others are in the evaluation&#39;s table)</h2>" in html
    assert "<h2>Evaluation: ensemble of 3 members</h2>" in html
    assert "3 members, 6 epochs in all" in html and "of the averaged members" in html
    assert 'id="test-accuracy">87.65%<' in html and "95.00%" in html  # the ensemble's test and validation
    m = report.metrics
    assert m["ensemble"] == 3 and m["members"] == rows and m["params_sha256"] == "e" * 64
    assert m["train_seconds"] == 4.5 and m["best_val_accuracy"] == 0.95
    write_result(_stage("Evaluation", EVALUATION), tmp_path / "single")
    single = page.run_report("run-1", PARAMS, "luigi", MANIFEST, {**stages, "evaluation": tmp_path / "single"})
    assert 'id="ensemble"' not in single.html and "<h2>Training</h2>" in single.html


def test_history_names_the_number_of_models_of_every_run(tmp_path):
    store.write_json(tmp_path / "r1" / "metrics.json", _metrics("r1", "2026-01-01", 0.25))
    old = {k: v for k, v in _metrics("r0", "2025-01-01", 0.5).items() if k not in ("ensemble", "members")}
    store.write_json(tmp_path / "r0" / "metrics.json", old)  # recorded before ensembles existed
    store.write_json(tmp_path / "r3" / "metrics.json", {**_metrics("r3", "2026-01-03", 0.75), "ensemble": 3})
    index.write_index(tmp_path)
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [(r["run_id"], r["ensemble"]) for r in rows] == [("r0", "1"), ("r1", "1"), ("r3", "3")]
    html = (tmp_path / "index.html").read_text()
    assert 'simple <span class="note">×3</span>' in html  # the ensemble's number of models, beside its preset
    assert html.count('<span class="note">×') == 1


def _metrics(run_id: str, created: str, acc: float) -> dict:
    record = metrics_record(run_id, {"epochs": 2, "seed": 1, "preset": "simple", "train_limit": 0},
                            {"train_seconds": 1.5, "params_sha256": "ab" * 32, "best_val_accuracy": 0.9},
                            {"test_accuracy": acc, "n_test": 10}, "luigi --module tasks RunPipeline")
    record["created"] = created
    return record


def test_metrics_record_has_the_required_fields():
    m = _metrics("r1", "2026-01-01", 0.75)
    for key in ("run_id", "created", "test_accuracy", "test_accuracy_ci95", "test_error_count", "n_test", "ece",
                "best_val_accuracy", "epochs", "epochs_run", "seed", "preset", "train_limit", "train_seconds",
                "params_sha256", "parameters", "rerun_command"):
        assert key in m
    assert m["test_accuracy"] == 0.75 and m["epochs"] == 2


def test_latest_link_moves_and_index_lists_runs_in_order(tmp_path):
    for run_id, created, acc in [("r2", "2026-01-02", 0.5), ("r1", "2026-01-01", 0.25)]:
        store.write_json(tmp_path / run_id / "metrics.json", _metrics(run_id, created, acc))
        index.point_latest(tmp_path, run_id)
    assert os.readlink(tmp_path / "latest") == "r1"
    index.write_index(tmp_path)
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in lines[1:]] == ["r1", "r2"]  # oldest first, latest link skipped
    html = (tmp_path / "index.html").read_text()
    assert html.index("r1/report.html") < html.index("r2/report.html") and "25.00%" in html
    assert "2 runs, oldest first" in html
    assert index.index_lists(tmp_path, "r1") and not index.index_lists(tmp_path, "r3")
    assert not list(tmp_path.glob(".*"))  # no temporary link or file left


def test_index_of_one_run_says_run_and_needs_latest(tmp_path):
    store.write_json(tmp_path / "r1" / "metrics.json", _metrics("r1", "2026-01-01", 0.25))
    index.write_index(tmp_path)
    html = (tmp_path / "index.html").read_text()
    assert "1 run, oldest first" in html and "1 runs" not in html
    assert not index.index_lists(tmp_path, "r1")  # no latest link yet
    index.update_index(tmp_path, "r1")
    assert index.index_lists(tmp_path, "r1")
    os.remove(tmp_path / "r1" / "metrics.json")
    os.rmdir(tmp_path / "r1")
    assert not index.index_lists(tmp_path, "r1")  # latest dangles


# --- the task layer: the rerun command and RunIndex -------------------------------------------

def _parsed(command: str):
    """The RunPipeline that luigi's own command-line parsing builds from ``command``."""
    from luigi.cmdline_parser import CmdlineParser

    import tasks  # noqa: F401  (registers the task classes, as --module tasks does)

    argv = shlex.split(command)
    assert argv[:3] == ["luigi", "--module", "tasks"]
    with CmdlineParser.global_instance(argv[1:]) as parser:
        return parser.get_task_obj()


def test_rerun_command_round_trips_every_significant_parameter():
    from tasks import RenderReport, RunPipeline
    from tasks.report import rerun_command

    task = RenderReport(augment=False, learning_rate=0.002, epochs=3, train_limit=500, preset="simple",
                        clean_policy="drop", normalization="standardize")
    command = rerun_command(task)
    assert "--augment false" in command and "--learning-rate 0.002" in command
    assert "--local-scheduler" in command
    # luigi reads a bare --schedule as an abbreviation of its --scheduler-* options: the qualified form
    assert "--RunPipeline-schedule cosine" in command and "--schedule " not in command
    assert " ".join(shlex.quote(a) for a in shlex.split(command)) == command  # quoted for a POSIX shell
    rebuilt = _parsed(command)
    assert isinstance(rebuilt, RunPipeline) and rebuilt.augment is False
    assert rebuilt.to_str_params(only_significant=True) == task.to_str_params(only_significant=True)
    # every significant parameter is explicit, so the command does not depend on defaults or luigi.cfg
    flags = {a[2:].replace("-", "_").removeprefix("RunPipeline_") for a in shlex.split(command) if a.startswith("--")}
    significant = {name for name, p in RunPipeline.get_params() if p.significant}
    assert significant <= flags
    default = RenderReport()
    assert _parsed(rerun_command(default)).to_str_params() == RunPipeline().to_str_params()
    assert "--augment true" in rerun_command(default)


@pytest.fixture
def fake_report(isolated_storage, monkeypatch):
    """A RenderReport whose output is a hand-written run folder, complete by fiat: RunIndex alone is tested."""
    from tasks import RenderReport

    report = RenderReport(preset="simple", epochs=1, train_limit=100)
    run_dir = report.output_dir()
    store.write_json(run_dir / "metrics.json", _metrics(report.run_id(), "2026-01-01", 0.5))
    store.write_manifest(run_dir)
    monkeypatch.setattr(RenderReport, "complete", lambda self: True)
    return report


def test_run_index_is_complete_after_running_and_a_rerun_does_nothing(fake_report):
    import luigi

    from tasks import RunIndex
    from tasks.config import report_path

    task = RunIndex(preset="simple", epochs=1, train_limit=100)
    assert task.requires().run_id() == fake_report.run_id()
    assert not task.complete()
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")
    assert task.complete()
    assert os.readlink(report_path("latest")) == fake_report.run_id()
    assert fake_report.run_id() in (report_path("history.csv")).read_text()
    stamps = {p: p.lstat().st_mtime_ns for p in report_path().iterdir()}
    result = luigi.build([task], local_scheduler=True, log_level="WARNING", detailed_summary=True)
    assert result.scheduling_succeeded and "ran successfully" not in result.summary_text
    assert {p: p.lstat().st_mtime_ns for p in report_path().iterdir()} == stamps


def test_run_index_is_incomplete_when_latest_is_gone_or_the_report_is_newer(fake_report):
    from tasks import RunIndex
    from tasks.config import report_path

    task = RunIndex(preset="simple", epochs=1, train_limit=100)
    task.run()
    assert task.complete()
    os.remove(report_path("latest"))
    assert not task.complete()
    task.run()
    assert task.complete()
    earlier = fake_report.manifest_path().stat().st_mtime_ns - 1_000_000_000
    os.utime(report_path("index.html"), ns=(earlier, earlier))  # the report was regenerated after the index
    assert not task.complete()
    task.run()
    assert task.complete()
    report_path("index.html").write_text("<html></html>")  # an index that does not list the run
    assert not task.complete()


def test_an_edited_page_template_makes_the_report_stale(isolated_storage):
    """The page depends on its template as on code: the report records the template's digest."""
    from pipeline.report.render import TEMPLATES
    from pipeline.store.hashing import sha256_file
    from tasks import RenderReport

    report = RenderReport(preset="simple", epochs=1, train_limit=100)
    digests = report.code_digests()
    key = "pipeline.report.templates/report.html.j2"
    assert digests[key] == sha256_file(TEMPLATES / "report.html.j2")
    assert "pipeline.report.page" in digests and "tasks.report.RenderReport" in digests
    run_dir = report.output_dir()
    assert report.stale_reasons() == ["missing output"]
    store.write_bytes(run_dir / "report.html", b"<html></html>")
    store.write_json(run_dir / "metrics.json", {})
    record = {"params": report.to_str_params(only_significant=True), "code": {"modules": digests}}
    store.write_manifest(run_dir, record)
    assert report.stale_reasons() == []
    store.write_manifest(run_dir, {**record, "code": {"modules": {**digests, key: "0" * 64}}})
    assert report.stale_reasons() == [f"changed code: {key}"]
