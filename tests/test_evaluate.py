"""Evaluation metrics against slow, obvious references, the figures as real PNGs, and the stage."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.evaluate import figures
from pipeline.evaluate import metrics as evaluate
from pipeline.figures import save_png


def _random_probs(n=500, k=10, seed=0, sharp=3.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), labels] += sharp  # mostly right, sometimes wrong
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return probs.astype(np.float32), labels


def test_confusion_matrix_matches_a_loop():
    probs, labels = _random_probs()
    predicted = probs.argmax(axis=1)
    expected = np.zeros((10, 10), dtype=np.int64)
    for t, p in zip(labels, predicted):
        expected[t, p] += 1
    np.testing.assert_array_equal(evaluate.confusion_matrix(labels, predicted), expected)


def test_per_class_table_matches_definitions():
    probs, labels = _random_probs(seed=1)
    predicted = probs.argmax(axis=1)
    table = evaluate.per_class_table(evaluate.confusion_matrix(labels, predicted))
    for c in range(10):
        tp = np.sum((predicted == c) & (labels == c))
        precision = tp / np.sum(predicted == c)
        recall = tp / np.sum(labels == c)
        assert table.loc[c, "precision"] == pytest.approx(precision)
        assert table.loc[c, "recall"] == pytest.approx(recall)
        assert table.loc[c, "f1"] == pytest.approx(2 * precision * recall / (precision + recall))
        assert table.loc[c, "support"] == np.sum(labels == c)


def test_class_never_predicted_gets_zero_precision_not_nan():
    cm = np.array([[5, 0], [3, 0]])
    table = evaluate.per_class_table(cm)
    assert table.loc[1, "precision"] == 0.0 and table.loc[1, "f1"] == 0.0
    assert table.loc[0, "precision"] == pytest.approx(5 / 8)


def test_wilson_interval_is_the_set_of_p_not_rejected_by_the_score_test():
    z = evaluate.Z95
    for k, n in [(9920, 10000), (0, 50), (50, 50), (7, 20)]:
        lo, hi = evaluate.wilson_interval(k, n)
        grid = np.linspace(0, 1, 200001)
        # score test: |k/n - p| <= z * sqrt(p (1 - p) / n)
        accepted = grid[np.abs(k / n - grid) <= z * np.sqrt(grid * (1 - grid) / n) + 1e-15]
        assert lo == pytest.approx(accepted.min(), abs=1e-5)
        assert hi == pytest.approx(accepted.max(), abs=1e-5)
        assert lo <= k / n <= hi
    with pytest.raises(ValueError, match="successes"):
        evaluate.wilson_interval(11, 10)


def test_most_confused_pairs_are_largest_off_diagonal_cells():
    cm = np.diag([100] * 4)
    cm[1, 2], cm[3, 0], cm[2, 1], cm[0, 3] = 7, 9, 7, 1
    pairs = evaluate.most_confused_pairs(cm, k=3)
    assert pairs == [{"true": 3, "predicted": 0, "count": 9},
                     {"true": 1, "predicted": 2, "count": 7},
                     {"true": 2, "predicted": 1, "count": 7}]


def test_confident_mistakes_are_wrong_and_sorted():
    probs, labels = _random_probs(seed=2, sharp=1.0)
    mistakes = evaluate.confident_mistakes(probs, labels, k=10)
    assert len(mistakes) == 10
    conf = [m["confidence"] for m in mistakes]
    assert conf == sorted(conf, reverse=True)
    for m in mistakes:
        assert m["true"] == labels[m["index"]] and m["predicted"] != m["true"]
        assert m["predicted"] == probs[m["index"]].argmax()
    wrong = probs.argmax(1) != labels
    assert conf[0] == pytest.approx(probs[wrong].max(axis=1).max())


def test_ece_matches_a_per_example_loop():
    probs, labels = _random_probs(seed=3, sharp=1.5)
    table, ece = evaluate.reliability(probs, labels, n_bins=10)
    total, n = 0.0, len(labels)
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        members = [i for i in range(n) if (lo < probs[i].max() <= hi) or (b == 0 and probs[i].max() == 0)]
        if members:
            conf = np.mean([probs[i].max() for i in members])
            acc = np.mean([probs[i].argmax() == labels[i] for i in members])
            total += len(members) / n * abs(acc - conf)
            assert table.loc[b, "count"] == len(members)
    assert ece == pytest.approx(total, rel=1e-6)
    assert table["count"].sum() == n


def test_perfectly_calibrated_toy_has_zero_ece_and_overconfident_has_large():
    # 10 examples at confidence 0.8, exactly 8 correct -> calibrated
    probs = np.full((10, 2), 0.2)
    probs[:, 0] = 0.8
    labels = np.array([0] * 8 + [1] * 2)
    assert evaluate.reliability(probs, labels, n_bins=10)[1] == pytest.approx(0.0, abs=1e-12)
    probs[:, 0], probs[:, 1] = 0.99, 0.01
    labels = np.array([0] * 5 + [1] * 5)
    assert evaluate.reliability(probs, labels, n_bins=10)[1] == pytest.approx(0.49)


def test_summarize_is_consistent_and_json_ready(tmp_path):
    from pipeline.store import read_json, write_json

    probs, labels = _random_probs(seed=4, sharp=2.0)
    s = evaluate.summarize(probs, labels)
    correct = int((probs.argmax(1) == labels).sum())
    assert s["test_accuracy"] == correct / len(labels)
    assert s["n_errors"] == len(labels) - correct
    assert sum(map(sum, s["confusion"])) == len(labels)
    assert s["ci95"][0] < s["test_accuracy"] < s["ci95"][1]
    assert s["per_class"]["3"]["support"] == int(np.sum(labels == 3))
    plain = {k: v for k, v in s.items() if k not in ("per_class_table", "reliability")}
    write_json(tmp_path / "e.json", plain)
    assert read_json(tmp_path / "e.json")["confusion"] == s["confusion"]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="labels must lie"):
        evaluate.summarize(np.full((3, 10), 0.1), np.array([0, 1, 10]))
    with pytest.raises(ValueError, match="zero examples"):
        evaluate.summarize(np.zeros((0, 10)), np.zeros(0, dtype=int))


def _is_png(path):
    data = path.read_bytes()
    return data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 2000


def test_every_figure_is_written_as_a_png(tmp_path):
    probs, labels = _random_probs(n=300, seed=5, sharp=2.0)
    s = evaluate.summarize(probs, labels)
    rng = np.random.default_rng(0)
    mistakes = s["confident_mistakes"]
    drawn = {
        "cm": figures.confusion_figure(np.array(s["confusion"])),
        "pc": figures.per_class_figure(s["per_class_table"]),
        "rel": figures.reliability_figure(s["reliability"], s["ece"]),
        "mis": figures.mistakes_figure(rng.random((len(mistakes), 28, 28)), mistakes),
        "none": figures.mistakes_figure(np.zeros((0, 28, 28)), []),
        "filters": figures.filters_figure(rng.normal(size=(30, 1, 5, 5))),
        "maps": figures.feature_maps_figure(rng.random((28, 28)), rng.random((30, 24, 24)), "conv1"),
    }
    for name, fig in drawn.items():
        save_png(fig, tmp_path / f"{name}.png")
    for name in ["cm", "pc", "rel", "mis", "none", "filters", "maps"]:
        assert _is_png(tmp_path / f"{name}.png"), name
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes left no temporary files
    assert math.isfinite(s["ece"])


def test_figures_never_import_pyplot():
    """Figures are drawn without pyplot (no process-wide figure state, no backend switch): checked in a
    fresh interpreter, where nothing else could have imported it."""
    import subprocess
    import sys

    code = """
import sys, numpy as np
from pipeline.evaluate import figures, metrics
rng = np.random.default_rng(0)
probs = rng.dirichlet(np.ones(10), size=200).astype(np.float32)
s = metrics.summarize(probs, rng.integers(0, 10, size=200))
figures.confusion_figure(np.array(s["confusion"]))
figures.per_class_figure(s["per_class_table"])
figures.reliability_figure(s["reliability"], s["ece"])
figures.mistakes_figure(rng.random((3, 28, 28)), s["confident_mistakes"][:3])
figures.filters_figure(rng.normal(size=(4, 1, 5, 5)))
figures.feature_maps_figure(rng.random((28, 28)), rng.random((4, 24, 24)), "t")
assert "matplotlib" in sys.modules and "matplotlib.pyplot" not in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_captions_state_what_the_data_show():
    cm = np.diag([50, 40, 30])
    cm[2, 1], cm[0, 2] = 4, 1
    pairs = evaluate.most_confused_pairs(cm)
    assert "5 errors in 125 test images" in figures.confusion_caption(cm, pairs)
    assert "2 read as 1 (4 times)" in figures.confusion_caption(cm, pairs)
    assert figures.confusion_caption(np.diag([3, 3]), []).endswith("0 errors in 6 test images.")
    table = evaluate.per_class_table(cm)
    assert f"Lowest F1: digit 2 ({table.loc[2, 'f1']:.4f}" in figures.per_class_caption(table)
    mistakes = [{"confidence": 0.99}, {"confidence": 0.75}]
    assert "The 2 test images (of 7 misclassified)" in figures.mistakes_caption(mistakes, 7)
    assert "0.75 to 0.99" in figures.mistakes_caption(mistakes, 7)
    assert "no mistakes" in figures.mistakes_caption([], 0)
    assert "The 8 learned 3×3 filters" in figures.filters_caption(np.zeros((8, 1, 3, 3)))
    assert "all 8 maps of 24×24" in figures.feature_maps_caption(np.zeros((8, 24, 24)), 17, 3)
    assert "#17 (label 3)" in figures.feature_maps_caption(np.zeros((8, 24, 24)), 17, 3)
    assert "the first 32 of 64 maps" in figures.feature_maps_caption(np.zeros((64, 5, 5)), 0, 0)


def test_evaluate_stage_returns_one_consistent_result(tmp_path):
    """The stage on an untrained model: summary, tables, figures and artifacts agree with each other."""
    import pandas as pd

    from pipeline.evaluate.stage import evaluate_stage
    from pipeline.nn import build_model, preset_spec, sha256_arrays
    from pipeline.result import write_result
    from pipeline.store import read_json

    rng = np.random.default_rng(0)
    model = build_model(preset_spec("simple"), (1, 28, 28), rng)
    x = rng.random((64, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, size=64)
    source = np.arange(64, dtype=np.int64) + 1000
    calls = []
    result = evaluate_stage(model, x, y, source, n_mistakes=5, progress=lambda f, m: calls.append(f))
    assert calls[-1] == 1.0 and calls == sorted(calls)
    s = result.summary
    probs = result.artifacts["predictions"]["probabilities"]
    assert probs.shape == (64, 10) and probs.dtype == np.float32
    assert s["test_accuracy"] == float((probs.argmax(1) == y).mean())
    assert s["model_params_sha256"] == sha256_arrays(model.parameters())
    assert result.title == "Evaluation" and result.headline[0][0] == "Test accuracy"
    assert [t.name for t in result.tables] == ["per_class", "confused_pairs", "confident_mistakes", "reliability"]
    assert [f.name for f in result.figures] == ["confusion", "per_class", "reliability", "mistakes", "filters",
                                                "feature_maps"]
    assert all(f.title and f.caption for f in result.figures)
    assert set(result.artifacts) == {"predictions", "mistake_images", "filters", "feature_maps"}
    mistakes = result.artifacts["mistake_images"]
    assert len(mistakes["images"]) == len(s["confident_mistakes"]) == 5
    np.testing.assert_array_equal(mistakes["source_index"], source[mistakes["index"]])
    np.testing.assert_array_equal(mistakes["images"], x[mistakes["index"], 0])
    assert result.artifacts["feature_maps"]["maps"].shape[0] == result.artifacts["filters"]["weights"].shape[0]
    write_result(result, tmp_path)
    index = read_json(tmp_path / "result.json")
    assert index["summary"]["n_test"] == 64 and "per_class_table" not in index["summary"]
    frame = pd.read_pickle(tmp_path / "confident_mistakes.pkl")
    assert list(frame.columns) == ["index", "source_index", "true", "predicted", "confidence", "p_true"]
    for figure in index["figures"]:
        assert _is_png(tmp_path / figure["file"])


def test_evaluate_task_writes_every_listed_artifact(tmp_path, mnist_dir):
    """EvaluateCNN on a one-epoch model: result, figures, tables and predictions agree with each other."""
    import json
    import pickle

    import luigi
    import pandas as pd

    from conftest import storage_at
    from pipeline import store
    from tasks.evaluate import EvaluateCNN

    config = luigi.configuration.get_config()
    saved = config.get("FetchMNIST", "mirrors", None)
    config.set("FetchMNIST", "mirrors", json.dumps([str(mnist_dir)]))  # offline: the bundled copy only
    try:
        with storage_at(tmp_path):
            task = EvaluateCNN(train_limit=1000, epochs=1, seed=5, preset="simple", augment=False,
                               learning_rate=1e-3)
            assert luigi.build([task], local_scheduler=True, log_level="WARNING")
            out = Path(task.output().path).parent
            model_dir = Path(task.input()["models"][0].path).parent  # the single model: member 0
            assert task.output_load()["title"] == "Evaluation"  # one line from a Python shell
    finally:
        if saved is None:
            config.remove_option("FetchMNIST", "mirrors")
        else:
            config.set("FetchMNIST", "mirrors", saved)
    result = store.read_json(out / "result.json")
    summary = result["summary"]
    with open(out / "predictions.pkl", "rb") as fh:
        pred = pickle.load(fh)
    probs, labels = pred["probabilities"], pred["labels"]
    assert probs.shape == (10000, 10) and probs.dtype == np.float32
    assert summary["n_test"] == 10000
    assert summary["test_accuracy"] == float((probs.argmax(1) == labels).mean())
    assert summary["ci95"][0] < summary["test_accuracy"] < summary["ci95"][1]
    assert summary["test_accuracy"] > 0.7  # one epoch on 900 digits, far above chance
    assert np.array(summary["confusion"]).sum() == 10000
    train_info = store.read_json(model_dir / "result.json")["summary"]
    assert summary["model_params_sha256"] == train_info["params_sha256"]
    assert len(result["figures"]) == 6 and len(result["tables"]) == 4
    for figure in result["figures"]:
        assert _is_png(out / figure["file"]) and figure["title"] and figure["caption"]
    for table in result["tables"]:
        assert isinstance(pd.read_pickle(out / table["file"]), pd.DataFrame)
    mistakes = pd.read_pickle(out / "confident_mistakes.pkl")
    assert (mistakes["true"] != mistakes["predicted"]).all()
    assert (pred["source_index"][mistakes["index"]] == mistakes["source_index"]).all()
    with open(out / "filters.pkl", "rb") as fh:
        assert pickle.load(fh)["weights"].shape == (30, 1, 5, 5)  # SimpleConvNet's first layer
    # result.json is written after every other file of the stage, and the manifest after it
    newest = max(p.stat().st_mtime_ns for p in out.iterdir() if p.name not in ("result.json", "manifest.json"))
    assert (out / "result.json").stat().st_mtime_ns >= newest
    assert (out / "manifest.json").stat().st_mtime_ns >= (out / "result.json").stat().st_mtime_ns
    assert not (out / "evaluation.json").exists()  # replaced by result.json


# --- test-time augmentation ------------------------------------------------------------------

def _shift_by_padding(x, dy, dx):
    """An independent shift: pad every side with the image's minimum, then crop the moved window."""
    n, c, h, w = x.shape
    p = max(abs(dy), abs(dx))
    padded = np.empty((n, c, h + 2 * p, w + 2 * p), x.dtype)
    padded[...] = x.reshape(n, -1).min(axis=1)[:, None, None, None]
    padded[:, :, p:p + h, p:p + w] = x
    return padded[:, :, p - dy:p - dy + h, p - dx:p - dx + w]  # out[r] = x[r - dy]


def _digits_like(n, seed=0):
    """Blobs on a background of -0.42 (as after standardisation): a fill of 0 would be wrong here."""
    rng = np.random.default_rng(seed)
    x = np.full((n, 1, 28, 28), -0.42, np.float32)
    x[:, :, 6:22, 8:20] += rng.random((n, 1, 16, 12), dtype=np.float32) * 3
    return x


def _tiny_model(seed=0):
    from pipeline.nn import build_model, preset_spec

    return build_model(preset_spec("simple"), (1, 28, 28), np.random.default_rng(seed))


def test_tta_views_are_the_identity_then_shifts_on_each_axis():
    from pipeline.evaluate.tta import views

    assert views(0) == [(0, 0)]
    assert views(1) == [(0, 0), (0, 1), (0, -1), (1, 0), (-1, 0)]
    assert len(views(2)) == 9 and len(set(views(3))) == 13 and views(2)[5:] == [(0, 2), (0, -2), (2, 0), (-2, 0)]
    with pytest.raises(ValueError, match="tta must be 0"):
        views(4)
    with pytest.raises(ValueError, match="tta must be 0"):
        views(-1)


def test_tta_shift_is_the_augmentation_warp_without_rotation():
    """shift_images (slicing) against the slow per-pixel warp_reference at angle 0, and against padding."""
    from pipeline.data.augment import warp_reference
    from pipeline.evaluate.tta import shift_images

    x = _digits_like(2)
    for dy, dx in [(0, 1), (-1, 0), (2, -3), (-3, 3), (0, 0)]:
        fast = shift_images(x, dy, dx)
        slow = warp_reference(x, np.zeros(2), np.array([[dy, dx]] * 2))
        np.testing.assert_array_equal(fast, slow, err_msg=f"shift ({dy}, {dx})")
        np.testing.assert_array_equal(fast, _shift_by_padding(x, dy, dx))
    moved = shift_images(x, 1, 0)
    np.testing.assert_array_equal(moved[:, :, 1:], x[:, :, :-1])  # down one row
    assert (moved[:, :, 0] == np.float32(-0.42)).all()  # the row moved in is background
    with pytest.raises(ValueError, match="out of its frame"):
        shift_images(x, 28, 0)


def test_tta_with_only_the_identity_is_plain_evaluation():
    from pipeline.evaluate.stage import evaluate_stage
    from pipeline.evaluate.tta import predict, tta_probabilities, view_probabilities

    model, x = _tiny_model(), _digits_like(50, seed=1)
    plain = model.predict_proba(x)
    with_, without = predict(model, x, 0)
    np.testing.assert_array_equal(with_, plain)
    np.testing.assert_array_equal(without, plain)
    np.testing.assert_array_equal(tta_probabilities(model, x, 0), plain)
    (only,) = view_probabilities(model, x, [(0, 0)])
    np.testing.assert_array_equal(only, plain)
    y, source = np.arange(50) % 10, np.arange(50, dtype=np.int64)
    a = evaluate_stage(model, x, y, source)
    b = evaluate_stage(model, x, y, source, tta=0, val=(x, y))
    np.testing.assert_array_equal(a.artifacts["predictions"]["probabilities"],
                                  b.artifacts["predictions"]["probabilities"])
    assert a.summary == b.summary and "tta" not in a.summary


def _tta_by_hand(model, x, level):
    from pipeline.evaluate.tta import views

    per_view = [model.predict_proba(_shift_by_padding(x, dy, dx)) for dy, dx in views(level)]
    return np.mean(np.stack(per_view), axis=0, dtype=np.float64).astype(np.float32)


def test_evaluate_stage_with_tta_scores_the_mean_over_shifts_and_reports_validation():
    from pipeline.evaluate.stage import evaluate_stage

    model = _tiny_model(seed=3)
    x, xv = _digits_like(40, seed=4), _digits_like(30, seed=5)
    y, yv = np.arange(40) % 10, np.arange(30) % 7
    with pytest.raises(ValueError, match="chosen on validation"):
        evaluate_stage(model, x, y, np.arange(40), tta=1)
    result = evaluate_stage(model, x, y, np.arange(40, dtype=np.int64), tta=2, val=(xv, yv))
    probs = result.artifacts["predictions"]["probabilities"]
    np.testing.assert_allclose(probs, _tta_by_hand(model, x, 2), rtol=1e-6, atol=1e-7)
    assert not np.allclose(probs, model.predict_proba(x), atol=1e-4)  # the shifts did change the answer
    s = result.summary
    assert s["test_accuracy"] == float((probs.argmax(1) == y).mean())
    tta = s["tta"]
    assert tta["level"] == 2 and len(tta["views"]) == 9 and tta["views"][0] == [0, 0]
    assert tta["val_accuracy"] == float((_tta_by_hand(model, xv, 2).argmax(1) == yv).mean())
    assert tta["val_accuracy_without"] == float((model.predict(xv) == yv).mean())
    assert tta["test_accuracy_without"] == float((model.predict(x) == y).mean())
    label, text = result.headline[2]
    assert label == "Test-time augmentation" and text.startswith("9 views (shifts up to 2 px); validation ")


def test_an_ensemble_with_tta_averages_each_members_tta_probabilities():
    from pipeline.evaluate.ensemble import Member, ensemble_stage
    from pipeline.nn import model_state

    models = [_tiny_model(seed=s) for s in (10, 11)]
    x, xv = _digits_like(30, seed=6), _digits_like(20, seed=7)
    data = {"x_test": x, "y_test": np.arange(30) % 10, "test_source_index": np.arange(30, dtype=np.int64),
            "x_val": xv, "y_val": np.arange(20) % 10}
    members = [Member(model_state(m), {"seed": 10 + i, "best_epoch": 1, "epochs_run": 1, "best_val_accuracy": 0.1,
                                       "train_seconds": 1.0}) for i, m in enumerate(models)]
    result = ensemble_stage(members, data, tta=1)
    expected = np.mean([_tta_by_hand(m, x, 1) for m in models], axis=0, dtype=np.float64)
    np.testing.assert_allclose(result.artifacts["predictions"]["probabilities"], expected, rtol=1e-6, atol=1e-7)
    tta = result.summary["tta"]
    val = np.mean([_tta_by_hand(m, xv, 1) for m in models], axis=0, dtype=np.float64)
    assert tta["val_accuracy"] == float((val.argmax(1) == data["y_val"]).mean())
    plain_val = np.mean([m.predict_proba(xv) for m in models], axis=0, dtype=np.float64)
    assert tta["val_accuracy_without"] == float((plain_val.argmax(1) == data["y_val"]).mean())
    assert result.summary["val_accuracy"] == tta["val_accuracy"]  # the ensemble's own, with TTA
