"""The report's comparison with other runs, its narrative, its provenance, the index's charts and tables:
unit tests on real files (manifests, verified pickles) written into a temporary data and report directory."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from pipeline import store
from pipeline.inspect.mcnemar import mcnemar_predictions
from pipeline.report import comparison, narrative, provenance, trends
from pipeline.report.index import index_rows, trend_charts
from pipeline.report.tables import merge_equal_index_columns, table_html


def _record(run_id: str, created: str, acc: float, **params) -> dict:
    """A metrics record as load_runs returns it (report_path is added where a run is written)."""
    parameters = {"epochs": 1, "seed": 1, "preset": "simple", "augment": True, **params}
    return {"run_id": run_id, "created": created, "test_accuracy": acc, "test_accuracy_ci95": [acc - 0.01, acc + 0.01],
            "test_error_count": round((1 - acc) * 100), "n_test": 100, "best_val_accuracy": 0.5, "ece": 0.1,
            "epochs": parameters["epochs"], "epochs_run": 1, "seed": parameters["seed"], "preset": "simple",
            "train_limit": 1000, "train_seconds": 2.0, "params_sha256": run_id * 2, "ensemble": 1,
            "parameters": parameters, "rerun_command": f"luigi ... {run_id}"}


# --------------------------------------------------------------------- which runs are compared

def test_previous_is_the_newest_earlier_run_and_best_the_most_accurate_earliest_of_equals():
    runs = [_record("a", "2026-01-01T00:00:00", 0.9), _record("b", "2026-01-02T00:00:00", 0.95),
            _record("c", "2026-01-03T00:00:00", 0.95), _record("d", "2026-01-04T00:00:00", 0.5),
            _record("later", "2026-01-09T00:00:00", 0.99)]
    this = _record("e", "2026-01-05T00:00:00", 0.7)
    found = comparison.references(this, runs)
    assert found["previous"]["run_id"] == "d"
    assert found["best"]["run_id"] == "b"  # 0.95 twice: the earlier one; "later" was rendered after this run
    assert [m["run_id"] for m in comparison.other_runs(this, runs)] == ["a", "b", "c", "d"]
    # a run is never compared with itself (a re-rendered report replaces its own old record)
    assert comparison.references(_record("a", "2026-01-05T00:00:00", 0.7), runs[:1]) == {}


# --------------------------------------------------------------------- real files: predictions, verified

def _write_run(root, run_id: str, created: str, predicted: np.ndarray, labels: np.ndarray, **params) -> dict:
    """A run as the pipeline leaves it: data/eval/<run>/predictions.pkl sealed by its manifest, and
    reports/<run>/metrics.json whose manifest records the evaluation's manifest as an input."""
    eval_dir = root / "data" / "eval" / f"{run_id}-x"
    store.write_pickle(eval_dir / "predictions.pkl", {"labels": labels, "predicted": predicted,
                                                      "source_index": np.arange(len(labels))})
    store.write_manifest(eval_dir, {"task": "EvaluateCNN", "code": {"digest": "e" * 64},
                                    "created": created})
    acc = float(np.mean(predicted == labels))
    record = _record(run_id, created, acc, **params)
    run_dir = root / "reports" / run_id
    store.write_json(run_dir / "metrics.json", record)
    eval_manifest = eval_dir / store.MANIFEST_FILE
    store.write_manifest(run_dir, {"task": "RenderReport", "inputs": {
        f"EvaluateCNN_{run_id}": {"path": str(eval_manifest), "sha256": store.sha256_file(eval_manifest)}}})
    return {**record, "report_path": str(run_dir)}


@pytest.fixture
def two_runs(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 400)
    pred_a = np.where(rng.random(400) < 0.80, labels, (labels + 1) % 10)
    pred_b = np.where(rng.random(400) < 0.90, labels, (labels + 3) % 10)
    a = _write_run(tmp_path, "run-a", "2026-01-01T00:00:00+00:00", pred_a, labels, seed=1)
    this = _record("run-b", "2026-01-02T00:00:00+00:00", float(np.mean(pred_b == labels)), seed=2, augment=False)
    this_pred = {"labels": labels, "predicted": pred_b, "source_index": np.arange(400)}
    return tmp_path, a, this, this_pred


def test_comparison_runs_mcnemar_on_both_runs_verified_predictions(two_runs):
    root, a, this, this_pred = two_runs
    [c] = comparison.compare_with_references(this, this_pred, [a], root / "data")
    assert c["roles"] == ["previous", "best"] and c["a"] == "run-a" and c["b"] == "run-b"
    expected = mcnemar_predictions(this_pred["labels"], store.read_verified_pickle(
        root / "data" / "eval" / "run-a-x" / "predictions.pkl")["predicted"], this_pred["predicted"])
    assert (c["mcnemar"]["b"], c["mcnemar"]["c"]) == (expected.b, expected.c)
    assert c["mcnemar"]["p_value"] == pytest.approx(expected.p_value)
    assert {p["name"] for p in c["parameters"]} == {"seed", "augment"}
    assert [m["name"] for m in c["metrics"]][0] == "test_accuracy"
    assert len(c["per_class"]) == 10 and c["missing"] == ""
    sentence = comparison.significance(c)
    assert "paired test images" in sentence and "significant at the 0.05 level" in sentence


def test_comparison_says_plainly_when_the_other_runs_predictions_cannot_be_used(two_runs):
    root, a, this, this_pred = two_runs
    eval_dir = root / "data" / "eval" / "run-a-x"
    path = eval_dir / "predictions.pkl"
    good = path.read_bytes()

    path.write_bytes(good[:-1] + b"\x00")  # changed after it was written
    [c] = comparison.compare_with_references(this, this_pred, [a], root / "data")
    assert c["mcnemar"] is None and c["per_class"] == []
    assert "cannot be used" in c["missing"] and "was changed after it was written" in c["missing"]
    assert comparison.significance(c) == c["missing"]

    path.write_bytes(good)
    store.write_manifest(eval_dir, {"task": "EvaluateCNN", "created": "2026-01-03T00:00:00"})  # rebuilt since
    [c] = comparison.compare_with_references(this, this_pred, [a], root / "data")
    assert c["mcnemar"] is None and "was rebuilt after its report was rendered" in c["missing"]

    for p in eval_dir.iterdir():
        p.unlink()
    eval_dir.rmdir()  # removed by gc
    [c] = comparison.compare_with_references(this, this_pred, [a], root / "data")
    assert "no longer in the data directory" in c["missing"] and a["rerun_command"] in c["missing"]
    # metrics are compared all the same, from the records
    assert c["metrics"][0]["delta"] == pytest.approx(this["test_accuracy"] - a["test_accuracy"])

    [c] = comparison.compare_with_references(this, None, [a], root / "data")
    assert "this run's evaluation holds no test predictions" in c["missing"]


def test_identical_predictions_are_not_tested_and_the_sentence_says_why():
    c = {"mcnemar": {"b": 0, "c": 0, "n_paired": 10_000, "p_value": 1.0, "significant": False, "alpha": 0.05},
         "missing": ""}
    assert "right and wrong on exactly the same of the 10,000" in comparison.significance(c)
    c["mcnemar"] = {"b": 30, "c": 40, "n_paired": 10_000, "p_value": 0.28, "significant": False, "alpha": 0.05}
    assert comparison.significance(c).endswith("p = 0.28, not significant at the 0.05 level: "
                                               "chance alone could explain it.")
    assert comparison.p_text(1e-30) == "p < 0.001" and comparison.p_text(0.0123) == "p = 0.012"


# --------------------------------------------------------------------- the narrative

TRAINING = {"n_train": 900, "n_val": 100}


def _text(paragraph: list[dict]) -> str:
    return "".join(part["text"] for part in paragraph)


def test_narrative_of_a_first_run_says_what_ran_and_that_it_is_first():
    this = {**_record("r1", "2026-01-01T00:00:00", 0.8765), "test_error_count": 1234, "n_test": 10_000}
    opening = narrative.narrative(this, TRAINING, [], 0, "report.html")
    first = _text(opening["paragraphs"][0])
    assert first == ("This run trained one model (seed 1) with the simple preset for 1 epoch on the first 1,000 "
                     "training images (900 to train on, 100 for validation), with augmentation. It scored 87.65% on "
                     "the 10,000 test images (95% interval 86.65%–88.65%), 1,234 mistakes.")
    assert "first run in this report directory" in _text(opening["paragraphs"][1])
    assert opening["alone"] and opening["definitions"] == ""


def test_narrative_names_an_ensemble_and_counts_in_the_right_number():
    this = {**_record("r1", "2026-01-01T00:00:00", 0.99), "ensemble": 3, "epochs": 12, "train_limit": 0,
            "members": [{"seed": 5}, {"seed": 6}, {"seed": 7}], "test_error_count": 1}
    this["parameters"]["augment"] = False
    text = narrative.what_ran(this, {}) + " " + narrative.result(this)
    assert "an ensemble of 3 models (seeds 5–7)" in text and "for 12 epochs on all training images" in text
    assert "without augmentation" in text and "1 mistake." in text
    assert narrative.plural(1, "run") == "1 run" and narrative.plural(2, "run") == "2 runs"


def test_narrative_names_the_recipe_levers_that_were_on():
    this = _record("r1", "2026-01-01T00:00:00", 0.99, label_smoothing=0.1, ema_decay=0.999, max_scale=0.1, tta=1)
    text = narrative.what_ran(this, {}) + " " + narrative.result(this)
    assert ("with augmentation (scaled by up to ±10%), label smoothing 0.1 and a moving average of the weights "
            "(decay 0.999).") in text
    assert "It scored 99.00% on the 100 test images, averaging 5 shifted views of each image (95% interval" in text
    off = _record("r2", "2026-01-01T00:00:00", 0.99, label_smoothing=0.0, augment=False, schedule="onecycle")
    assert narrative.what_ran(off, {}).endswith("without augmentation, with the one-cycle schedule.")
    assert "views" not in narrative.result(off)
    elastic = _record("r3", "2026-01-01T00:00:00", 0.99, label_smoothing=0.0, max_scale=0.1, elastic_alpha=34.0)
    assert narrative.what_ran(elastic, {}).endswith(
        "with augmentation (scaled by up to ±10%, elastic distortion, alpha 34, sigma 4 px).")


def test_narrative_names_previous_and_best_with_links_and_the_definitions(two_runs):
    root, a, this, this_pred = two_runs
    worse = _write_run(root, "run-0", "2025-12-31T00:00:00+00:00", np.zeros(400, dtype=np.int64),
                       this_pred["labels"])  # the oldest and least accurate
    runs = [worse, a]
    comps = comparison.compare_with_references(this, this_pred, runs, root / "data")
    assert [c["roles"] for c in comps] == [["previous", "best"]]  # run-a is both
    better = _write_run(root, "run-best", "2025-12-30T00:00:00+00:00", this_pred["labels"], this_pred["labels"])
    runs = [better, worse, a]
    comps = comparison.compare_with_references(this, this_pred, runs, root / "data")
    assert [(c["roles"], c["a"]) for c in comps] == [(["previous"], "run-a"), (["best"], "run-best")]
    opening = narrative.narrative(this, TRAINING, comps, len(runs), "report.html")
    previous, best = opening["paragraphs"][1], opening["paragraphs"][2]
    assert _text(previous).startswith("Against the previous run, run-a (rendered 2026-01-01 00:00:00 UTC; "
                                      "augment true → false and seed 1 → 2): ")
    assert {"text": "run-a", "href": "../run-a/report.html"} in previous
    assert {"text": "run-best", "href": "../run-best/report.html"} in best
    assert "points lower (100.00% →" in _text(best) and "McNemar's test on 400 paired test images" in _text(best)
    assert ("Compared with the 3 other runs of this report directory when this page was rendered (2026-01-02 "
            "00:00:00 UTC)") in opening["definitions"]
    assert comparison.DEFINITIONS["previous"] in opening["definitions"]
    assert "highest test accuracy" not in " ".join(_text(p) for p in opening["paragraphs"])  # it is not the best


def test_parameter_phrase_lists_three_then_counts_the_rest():
    changes = [{"name": n, "a": 1, "b": 2} for n in "abcde"]
    assert narrative.parameter_phrase(changes[:1]) == "a 1 → 2"
    assert narrative.parameter_phrase(changes[:2]) == "a 1 → 2 and b 1 → 2"
    assert narrative.parameter_phrase(changes) == "a 1 → 2, b 1 → 2, c 1 → 2 and 2 more parameters"
    assert narrative.parameter_phrase([]) == "the same parameters"
    assert narrative.parameter_phrase([{"name": "augment", "a": True, "b": None}]) == "augment true → (default)"


# --------------------------------------------------------------------- provenance from the manifests

def test_provenance_follows_the_manifests_inputs_and_keeps_every_digest(tmp_path):
    data = tmp_path / "data"
    prep = data / "processed" / "prep-x"
    store.write_json(prep / "summary.json", {})
    store.write_manifest(prep, {"task": "PrepareData", "code": {"digest": "p" * 64}, "created": "2026-01-01T00:00:01",
                                "provenance": {"git": {"commit": "c" * 40, "dirty": True}}})
    train = data / "models" / "m-x"
    store.write_json(train / "summary.json", {})
    store.write_manifest(train, {"task": "TrainCNN", "code": {"digest": "t" * 64}, "created": "2026-01-01T00:00:02",
                                 "provenance": {"blas": [{"library": "scipy.libs", "num_threads": 2},
                                                         {"library": "numpy.libs", "num_threads": 1}]},
                                 "inputs": {"PrepareData_x": {"path": "/elsewhere/processed/prep-x/manifest.json",
                                                              "sha256": "0" * 64}}})
    fetch = {"train-images-idx3-ubyte.gz": {"sha256_content": "a" * 64, "sha256_gz": "b" * 64, "bytes": 5}}
    record = {"task": "RenderReport", "code": {"digest": "r" * 64}, "inputs": {"TrainCNN_x": {"sha256": "1" * 64}},
              "provenance": {"python": "3.11.0", "libraries": {"numpy": "2.0"}, "blas": [], "git": None}}
    prov = provenance.provenance_record({"training": train}, data, fetch, record)
    # the prepared data is found through TrainCNN's inputs, re-rooted under this data directory
    assert [(s["stage"], s["task"], s["code_digest"][0]) for s in prov["stages"]] == [
        ("preparation", "PrepareData", "p"), ("training", "TrainCNN", "t")]
    assert prov["stages"][0]["git_dirty"] is True and prov["stages"][0]["output"] == "processed/prep-x"
    # NumPy's BLAS, the one the engine multiplies on; none recorded for the preparation
    assert [s["blas_threads"] for s in prov["stages"]] == [None, 1]
    assert prov["data"]["train-images-idx3-ubyte.gz"]["sha256_content"] == "a" * 64
    assert prov["report"] == {"task": "RenderReport", "code_digest": "r" * 64}
    assert prov["inputs"] == record["inputs"] and prov["environment"]["python"] == "3.11.0"
    section = provenance.provenance_section(prov)
    html = " ".join(t["html"] for t in section["tables"])
    assert "pppppppppppp…" in html and "cccccccccccc (uncommitted changes)" in html and "a" * 64 in html
    assert "<th>BLAS threads</th>" in html
    assert ("Git commit", "not a git checkout") in section["headline"]


# --------------------------------------------------------------------- tables

def test_equal_index_columns_show_once_and_different_ones_both():
    frame = pd.DataFrame({"index": [3, 1], "source_index": [3, 1], "true": [3, 1], "predicted": [5, 7]})
    merged = merge_equal_index_columns(frame)
    assert list(merged.columns) == ["index = source_index", "true", "predicted"]  # "true" equals too: not an index
    dropped = frame.assign(source_index=[4, 1])  # a cleaning policy that drops test rows
    assert list(merge_equal_index_columns(dropped).columns) == list(frame.columns)
    html = table_html(frame)
    assert html.count("<th>") == 3 and "<th>index = source_index</th>" in html


def test_a_crosstab_shows_with_one_header_row():
    flags = pd.DataFrame({"split": ["train", "train", "test"], "reason": ["blank", "duplicate", "blank"],
                          "label": [1, 1, 7]})
    table = pd.crosstab([flags["split"], flags["reason"]], flags["label"])  # as pipeline.data.audit.flag_summary
    html = table_html(table)
    assert html.count("<tr") == 1 + len(table)  # one header row, then the rows
    assert re.findall(r"<th>(.*?)</th>", html) == ["split", "reason", "1", "7"]


# --------------------------------------------------------------------- the index: charts and rows

def test_axis_steps_are_round_and_labels_stay_few():
    assert [trends.nice_step(s) for s in (31, 0.7, 4.2, 100)] == [10, 0.2, 1, 20]
    steps = [1, 2, 5, 10, 20, 50, 100, 200, 500]
    for n in (1, 12, 13, 50, 200, 1000):
        k = trends.x_label_step(n)
        i = steps.index(k)  # a round step, and the smallest one that keeps the labels few
        assert -(-n // k) <= trends.MAX_X_LABELS and (i == 0 or -(-n // steps[i - 1]) > trends.MAX_X_LABELS)
    bottom, top, step = trends.y_range([trends.Point(99.4, 99.2, 99.9)], floor=0, ceiling=100)
    assert bottom <= 99.2 and 99.9 <= top <= 100 and step > 0
    assert trends.y_range([trends.Point(1.5), trends.Point(2.2)], floor=0, include=0)[0] == 0


@pytest.mark.parametrize("n", [1, 3, 50])
def test_trend_chart_is_valid_svg_with_one_linked_dot_per_run(n):
    points = [trends.Point(90 + i / 10, 89 + i / 10, 91 + i / 10, f"r{i}/report.html", f"run {i + 1}")
              for i in range(n)]
    svg = str(trends.trend_svg(points, "Test accuracy", "test accuracy (%)", floor=0, ceiling=100,
                               running_best=True, chart_id="acc"))
    root = ET.fromstring(svg)  # well-formed
    assert root.tag == "svg" and root.get("viewBox") == f"0 0 {trends.WIDTH} {trends.HEIGHT}"
    links = root.findall("a")
    assert [a.get("href") for a in links] == [f"r{i}/report.html" for i in range(n)]
    assert all(a.find("circle") is not None and a.find("title").text == f"run {i + 1}" for i, a in enumerate(links))
    assert len(root.findall("polyline")) == (2 if n > 1 else 0)  # the joining line and the best so far
    labels = [t.text for t in root.findall("text") if t.get("text-anchor") == "middle" and t.text.isdigit()]
    assert labels[0] == "1" and len(labels) <= trends.MAX_X_LABELS
    assert "http" not in svg


def test_index_rows_sort_numbers_as_numbers_and_charts_cover_every_run():
    runs = [_record(f"r{i}", f"2026-01-{i + 1:02d}T00:00:00", acc, seed=seed)
            for i, (acc, seed) in enumerate([(0.9, 10), (0.95, 9), (0.5, 100)])]
    runs[2]["ensemble"] = 5
    rows = index_rows(runs)
    assert [r["href"] for r in rows] == ["r0/report.html", "r1/report.html", "r2/report.html"]
    seed_keys = [r["cells"][5]["key"] for r in rows]
    assert seed_keys == [10, 9, 100] and all(isinstance(k, int) for k in seed_keys)
    accuracy = [r["cells"][8] for r in rows]
    assert [c["text"] for c in accuracy] == ["90.00%", "95.00%", "50.00%"] and accuracy[0]["note"] == "89.00–91.00"
    assert rows[2]["cells"][3]["note"] == "×5"
    charts = trend_charts(runs)
    assert [c["id"] for c in charts] == ["accuracy-chart", "time-chart"]
    assert str(charts[0]["svg"]).count("<circle") == 3 and "Highest: run 2, r1, 95.00%" in charts[0]["caption"]
    assert re.search(r"best so far", charts[0]["caption"])
    assert trend_charts([]) == []


def test_metric_values_and_their_changes_share_one_format():
    text = comparison.metric_text
    assert (text("test_accuracy", 0.9944), text("test_accuracy", 0.0006, change=True)) == ("99.44%", "+0.06 points")
    assert (text("train_seconds", 103.24), text("train_seconds", -4.0, change=True)) == ("103.2", "-4.0")
    assert (text("ece", 0.01234), text("ece", 0.001, change=True)) == ("0.0123", "+0.0010")
    assert (text("test_error_count", 1234), text("test_error_count", -5, change=True)) == ("1,234", "-5")
    assert text("test_accuracy", None) == ""
