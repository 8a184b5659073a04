"""Two runs side by side: the parameters that differ, metrics with deltas, McNemar's test, per-class changes.

Inputs are what a run leaves: its ``metrics.json`` record (dict) and, when its
evaluation output is still there, its predictions {"labels" (N,), "predicted"
(N,), "source_index" (N,), ...}. The two prediction sets are paired by
``source_index`` (the row in the original test file), so the test is paired even
if the rows were ordered differently. Deltas are B - A.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.inspect.mcnemar import ALPHA, mcnemar_predictions

PREDICTIONS_FILE = "predictions.pkl"  # the evaluation stage's artifact "predictions"
# metrics listed first, in this order; any other number both records hold follows, sorted by name
METRIC_ORDER = ("test_accuracy", "test_error_count", "n_test", "best_val_accuracy", "ece", "epochs_run",
                "train_seconds")
NOT_METRICS = ("created", "run_id", "parameters", "rerun_command", "report_path")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def parameter_changes(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """[{"name", "a", "b"}] of every parameter whose value differs (a missing one is None), by name."""
    return [{"name": k, "a": a.get(k), "b": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def metric_changes(a: dict[str, Any], b: dict[str, Any], parameter_names: set[str] = frozenset()
                   ) -> list[dict[str, Any]]:
    """[{"name", "a", "b", "delta"}] of the numbers two metrics records hold; parameters (those the
    records list, and ``parameter_names``) are not metrics."""
    params = set(a.get("parameters", {})) | set(b.get("parameters", {})) | set(parameter_names)
    shared = [k for k in set(a) & set(b) if _is_number(a[k]) and _is_number(b[k])
              and k not in params and k not in NOT_METRICS]
    ordered = [k for k in METRIC_ORDER if k in shared] + sorted(k for k in shared if k not in METRIC_ORDER)
    return [{"name": k, "a": a[k], "b": b[k], "delta": b[k] - a[k]} for k in ordered]


def paired(pred_a: dict[str, Any], pred_b: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, predicted by A, predicted by B), int arrays (M,) over the test images both runs scored.

    Raises ValueError when the runs share no test image or disagree on a label.
    """
    ia, ib = np.asarray(pred_a["source_index"]), np.asarray(pred_b["source_index"])
    if ia.shape == ib.shape and np.array_equal(ia, ib):
        rows_a = rows_b = np.arange(len(ia))
    else:
        _, rows_a, rows_b = np.intersect1d(ia, ib, assume_unique=True, return_indices=True)
    if len(rows_a) == 0:
        raise ValueError("the two runs scored no test image in common, so they cannot be paired")
    labels_a, labels_b = np.asarray(pred_a["labels"])[rows_a], np.asarray(pred_b["labels"])[rows_b]
    if not np.array_equal(labels_a, labels_b):
        raise ValueError("the two runs give different labels to the same test images: not the same test set")
    return labels_a, np.asarray(pred_a["predicted"])[rows_a], np.asarray(pred_b["predicted"])[rows_b]


def per_class_changes(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> list[dict[str, Any]]:
    """Per class: support, recall (the accuracy on that class) and precision of A and B, with deltas B - A.

    ``labels``, ``pred_a``, ``pred_b``: int arrays of shape (N,). A class B never predicts has precision 0.
    """
    classes = np.union1d(np.unique(labels), np.union1d(np.unique(pred_a), np.unique(pred_b)))
    rows = []
    for k in classes:
        truth = labels == k
        row: dict[str, Any] = {"class": int(k), "support": int(truth.sum())}
        for name, pred in (("a", pred_a), ("b", pred_b)):
            hits = int(np.sum(truth & (pred == k)))
            row[f"recall_{name}"] = hits / row["support"] if row["support"] else 0.0
            predicted = int(np.sum(pred == k))
            row[f"precision_{name}"] = hits / predicted if predicted else 0.0
        row["recall_delta"] = row["recall_b"] - row["recall_a"]
        row["precision_delta"] = row["precision_b"] - row["precision_a"]
        rows.append(row)
    return rows


def verdict(acc_a: float, acc_b: float, p_value: float, identical: bool, alpha: float = ALPHA) -> str:
    """One plain sentence on whether B's test accuracy differs from A's."""
    if identical:
        return "the two runs make the same prediction on every test image: no difference to test"
    points = 100 * (acc_b - acc_a)
    direction = "more" if points > 0 else "less"
    change = f"B is {abs(points):.2f} points {direction} accurate than A" if points else "A and B are equally accurate"
    if p_value < alpha:
        return f"{change}; the difference is significant at the {alpha:g} level (McNemar p = {p_value:.3g})"
    return (f"{change}; the difference is not significant at the {alpha:g} level (McNemar p = {p_value:.3g}): "
            "chance alone explains it on this test set")


def compare_runs(a: dict[str, Any], b: dict[str, Any], pred_a: dict[str, Any] | None = None,
                 pred_b: dict[str, Any] | None = None, missing: str = "", alpha: float = ALPHA,
                 parameter_names: set[str] = frozenset()) -> dict[str, Any]:
    """The comparison of run A with run B as one JSON-able dict.

    Keys: a, b (run ids), same_model, parameters (a parameter a record leaves out is None: its
    default), metrics (``parameter_names`` are left out), mcnemar (None without both predictions;
    ``missing`` then says why), per_class, verdict.
    """
    out: dict[str, Any] = {
        "a": a["run_id"], "b": b["run_id"],
        "same_model": a.get("params_sha256") is not None and a.get("params_sha256") == b.get("params_sha256"),
        "parameters": parameter_changes(a.get("parameters", {}), b.get("parameters", {})),
        "metrics": metric_changes(a, b, parameter_names), "mcnemar": None, "per_class": [], "verdict": missing,
    }
    if pred_a is None or pred_b is None:
        out["verdict"] = missing or "predictions unavailable: no significance test"
        return out
    labels, pa, pb = paired(pred_a, pred_b)
    test = mcnemar_predictions(labels, pa, pb)
    acc_a, acc_b = float(np.mean(pa == labels)), float(np.mean(pb == labels))
    out["mcnemar"] = {**test.to_dict(alpha), "n_paired": int(len(labels)), "accuracy_a": acc_a, "accuracy_b": acc_b}
    out["per_class"] = per_class_changes(labels, pa, pb)
    out["verdict"] = verdict(acc_a, acc_b, test.p_value, identical=bool(np.array_equal(pa, pb)), alpha=alpha)
    return out
