"""The evaluation stage: score a trained model on the test split, once, as one
:class:`~pipeline.result.StageResult` (metrics, tables, figures with captions, artifacts).

The test split is scored here and nowhere else: epochs and settings were chosen
on the validation split only.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.nn import Sequential, sha256_arrays
from pipeline.progress import ProgressFn, ignore
from pipeline.result import Figure, StageResult, Table

NOTE = "the test split is scored once here; epochs and settings were chosen on validation only"
MISTAKE_COLUMNS = ["index", "source_index", "true", "predicted", "confidence", "p_true"]
N_MISTAKES = 24  # the most confident mistakes kept, drawn and tabled
SAMPLE = 0  # the test image whose feature maps are drawn: the first one, as in the book's figure


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def evaluate_stage(model: Sequential, x_test: np.ndarray, y_test: np.ndarray, source_index: np.ndarray,
                   n_mistakes: int = N_MISTAKES, progress: ProgressFn = ignore, *, tta: int = 0,
                   val: tuple[np.ndarray, np.ndarray] | None = None) -> StageResult:
    """Score ``model`` on x_test float32 (N, 1, 28, 28) against y_test int64 (N,).

    With ``tta`` > 0 the classifier scored is the model with test-time augmentation
    (:mod:`pipeline.evaluate.tta`), and ``val`` = (x_val, y_val) is required: the summary's
    ``tta`` record holds the validation accuracy with and without it (see :func:`with_tta`).

    ``source_index`` int64 (N,) names each test row in the original test file; it
    is carried into the mistakes so that an image can be found again.
    Artifacts: predictions {"probabilities" (N, 10) float32, "labels", "predicted",
    "source_index"}, mistake_images {"images" (M, 28, 28), "index", "source_index"},
    filters {"weights" (F, C, kh, kw), "layer_index"} and feature_maps {"image" (28, 28),
    "maps" (F, OH, OW), "test_index", "layer_index"}.
    """
    if not tta:
        progress(0.0, f"scoring {len(y_test)} test images")
        probs = model.predict_proba(x_test)  # (N, 10) float32
        return scored_stage(probs, model, x_test, y_test, source_index, n_mistakes, progress)
    from pipeline.evaluate.tta import predict, tta_record, views

    if val is None:
        raise ValueError("test-time augmentation is chosen on validation: pass val=(x_val, y_val)")
    progress(0.0, f"scoring {len(y_test)} test and {len(val[1])} validation images, {len(views(tta))} views each")
    probs, plain = predict(model, x_test, tta)  # (N, 10) float32, with and without TTA
    record = tta_record(tta, predict(model, val[0], tta), val[1], plain, y_test)
    return with_tta(scored_stage(probs, model, x_test, y_test, source_index, n_mistakes, progress), record)


def with_tta(result: StageResult, record: dict[str, Any]) -> StageResult:
    """``result`` of a classifier with test-time augmentation: ``record`` (:func:`pipeline.evaluate.tta.tta_record`)
    as the summary's ``tta``, and a headline entry with the validation accuracy with and without it."""
    import dataclasses

    headline = list(result.headline)
    headline.insert(2, ("Test-time augmentation",
                        f"{len(record['views'])} views (shifts up to {record['level']} px); validation "
                        f"{_pct(record['val_accuracy'])}, {_pct(record['val_accuracy_without'])} without"))
    return dataclasses.replace(result, summary={**result.summary, "tta": record}, headline=headline)


def scored_stage(probs: np.ndarray, model: Sequential, x_test: np.ndarray, y_test: np.ndarray,
                 source_index: np.ndarray, n_mistakes: int = N_MISTAKES,
                 progress: ProgressFn = ignore) -> StageResult:
    """The evaluation result of test probabilities ``probs`` (N, 10) float32, from any classifier (one
    model, or the average of an ensemble's); ``model`` is the network whose first layer is drawn and
    whose parameters are named by ``model_params_sha256``. Arguments as :func:`evaluate_stage`.
    """
    import pandas as pd

    from pipeline.evaluate import figures
    from pipeline.evaluate.metrics import summarize

    s = summarize(probs, y_test, n_mistakes=n_mistakes)
    for m in s["confident_mistakes"]:
        m["source_index"] = int(source_index[m["index"]])
    rows = [m["index"] for m in s["confident_mistakes"]]
    mistake_images = x_test[rows, 0] if rows else np.zeros((0,) + x_test.shape[2:], x_test.dtype)

    progress(0.5, "feature maps of the first convolution")
    conv_index = model.first_conv_index()
    maps = model.feature_maps(x_test[SAMPLE:SAMPLE + 1], conv_index)[0]  # (F, OH, OW)
    filters = model.first_conv_weights()  # (F, C, kh, kw)

    summary: dict[str, Any] = {key: value for key, value in s.items()
                               if key not in ("per_class_table", "reliability")}
    summary["model_params_sha256"] = sha256_arrays(model.parameters())
    summary["note"] = NOTE

    pairs, mistakes = s["most_confused_pairs"], s["confident_mistakes"]
    cm = np.array(s["confusion"])
    sample_source, sample_label = int(source_index[SAMPLE]), int(y_test[SAMPLE])
    progress(0.6, "drawing figures")
    figs = [
        Figure("confusion", "Confusion matrix", figures.confusion_caption(cm, pairs),
               figures.confusion_figure(cm)),
        Figure("per_class", "Per-class precision, recall and F1", figures.per_class_caption(s["per_class_table"]),
               figures.per_class_figure(s["per_class_table"])),
        Figure("reliability", "Calibration", figures.reliability_caption(s["reliability"], s["ece"]),
               figures.reliability_figure(s["reliability"], s["ece"])),
        Figure("mistakes", "Most confident mistakes", figures.mistakes_caption(mistakes, s["n_errors"]),
               figures.mistakes_figure(mistake_images, mistakes)),
        Figure("filters", "First-layer filters", figures.filters_caption(filters), figures.filters_figure(filters)),
        Figure("feature_maps", "Feature maps", figures.feature_maps_caption(maps, sample_source, sample_label),
               figures.feature_maps_figure(x_test[SAMPLE, 0], maps, f"First convolution, {maps.shape[0]} maps "
                                           f"of {maps.shape[1]}×{maps.shape[2]}")),
    ]
    tables = [
        Table("per_class", "Per-class precision, recall and F1", s["per_class_table"]),
        Table("confused_pairs", "Most confused pairs",
              pd.DataFrame(pairs, columns=["true", "predicted", "count"])),
        Table("confident_mistakes", "Most confident mistakes", pd.DataFrame(mistakes, columns=MISTAKE_COLUMNS)),
        Table("reliability", "Reliability bins", s["reliability"]),
    ]
    lo, hi = s["ci95"]
    headline = [
        ("Test accuracy", _pct(s["test_accuracy"])),
        ("95% interval (Wilson)", f"{_pct(lo)} – {_pct(hi)}"),
        ("Misclassified", f"{s['n_errors']:,} of {s['n_test']:,}"),
        ("Macro F1", f"{s['macro_f1']:.4f}"),
        ("Expected calibration error", f"{s['ece']:.4f}"),
        ("Mean confidence", _pct(s["mean_confidence"])),
        ("Log loss", f"{s['log_loss']:.4f}"),
    ]
    artifacts = {
        "predictions": {"probabilities": probs, "labels": y_test, "predicted": probs.argmax(axis=1),
                        "source_index": source_index},
        "mistake_images": {"images": mistake_images, "index": np.array(rows, dtype=np.int64),
                           "source_index": np.array([m["source_index"] for m in mistakes], dtype=np.int64)},
        "filters": {"weights": filters, "layer_index": conv_index},
        "feature_maps": {"image": x_test[SAMPLE, 0], "maps": maps, "test_index": SAMPLE, "layer_index": conv_index},
    }
    progress(1.0, f"test accuracy {_pct(s['test_accuracy'])}")
    return StageResult(title="Evaluation", summary=summary, headline=headline, tables=tables, figures=figs,
                       artifacts=artifacts)
