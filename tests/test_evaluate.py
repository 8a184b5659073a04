"""Evaluation metrics against slow, obvious references, and the figures as real PNGs."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline import evaluate, evaluate_plots


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
    evaluate_plots.confusion_figure(np.array(s["confusion"]), tmp_path / "cm.png")
    evaluate_plots.per_class_figure(s["per_class_table"], tmp_path / "pc.png")
    evaluate_plots.reliability_figure(s["reliability"], s["ece"], tmp_path / "rel.png")
    mistakes = s["confident_mistakes"]
    evaluate_plots.mistakes_figure(rng.random((len(mistakes), 28, 28)), mistakes, tmp_path / "mis.png")
    evaluate_plots.mistakes_figure(np.zeros((0, 28, 28)), [], tmp_path / "none.png")
    evaluate_plots.filters_figure(rng.normal(size=(30, 1, 5, 5)), tmp_path / "filters.png")
    evaluate_plots.feature_maps_figure(rng.random((28, 28)), rng.random((30, 24, 24)),
                                       tmp_path / "maps.png", "conv1")
    for name in ["cm", "pc", "rel", "mis", "none", "filters", "maps"]:
        assert _is_png(tmp_path / f"{name}.png"), name
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes left no temporary files
    assert math.isfinite(s["ece"])


def test_evaluate_task_writes_every_listed_artifact(tmp_path):
    """EvaluateCNN on a one-epoch model: JSON, figures, tables and predictions agree with each other."""
    import json
    import pickle

    import luigi
    import pandas as pd

    from conftest import MNIST_DIR, storage_at
    from pipeline import store

    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {MNIST_DIR}: copy ../shared/datasets/mnist/*.gz there")
    from tasks.evaluate import EvaluateCNN

    config = luigi.configuration.get_config()
    saved = config.get("FetchMNIST", "mirrors", None)
    config.set("FetchMNIST", "mirrors", json.dumps([str(MNIST_DIR)]))  # offline: the bundled copy only
    try:
        with storage_at(tmp_path):
            task = EvaluateCNN(train_limit=1000, epochs=1, seed=5, preset="simple", augment=False,
                               learning_rate=1e-3)
            assert luigi.build([task], local_scheduler=True, log_level="WARNING")
            out = Path(task.output().path).parent
            model_dir = task.input()["model"].path
    finally:
        if saved is None:
            config.remove_option("FetchMNIST", "mirrors")
        else:
            config.set("FetchMNIST", "mirrors", saved)
    summary = store.read_json(out / "evaluation.json")
    with open(out / "predictions.pkl", "rb") as fh:
        pred = pickle.load(fh)
    probs, labels = pred["probabilities"], pred["labels"]
    assert probs.shape == (10000, 10) and probs.dtype == np.float32
    assert summary["n_test"] == 10000
    assert summary["test_accuracy"] == float((probs.argmax(1) == labels).mean())
    assert summary["ci95"][0] < summary["test_accuracy"] < summary["ci95"][1]
    assert summary["test_accuracy"] > 0.7  # one epoch on 900 digits, far above chance
    assert np.array(summary["confusion"]).sum() == 10000
    train_info = store.read_json(Path(model_dir).parent / "train.json")
    assert summary["model_params_sha256"] == train_info["params_sha256"]
    for figure in summary["figures"]:
        assert _is_png(out / figure["file"]) and figure["title"] and figure["caption"]
    for table in summary["tables"]:
        assert isinstance(pd.read_pickle(out / table["file"]), pd.DataFrame)
    mistakes = pd.read_pickle(out / "confident_mistakes.pkl")
    assert (mistakes["true"] != mistakes["predicted"]).all()
    assert (pred["source_index"][mistakes["index"]] == mistakes["source_index"]).all()
    with open(out / "filters.pkl", "rb") as fh:
        assert pickle.load(fh)["weights"].shape == (30, 1, 5, 5)  # SimpleConvNet's first layer
    # the primary file is the newest: everything else was written before it
    newest = max(p.stat().st_mtime_ns for p in out.iterdir() if p.name != "evaluation.json")
    assert (out / "evaluation.json").stat().st_mtime_ns >= newest
