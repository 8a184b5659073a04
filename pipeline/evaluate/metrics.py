"""Metrics of a classifier from its predicted probabilities: accuracy with a
confidence interval, confusion matrix, per-class precision/recall/F1, the most
confused pairs, the most confident mistakes, and calibration.

Inputs everywhere: ``probs`` of shape (N, K) (rows sum to 1) and integer
``labels`` of shape (N,) in ``[0, K)``. Nothing here looks at a model, so the
same functions serve any classifier.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.ndim != 1 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"expected probs (N, K) and labels (N,), got {probs.shape} and {labels.shape}")
    if probs.shape[0] == 0:
        raise ValueError("cannot evaluate on zero examples: the test split is empty")
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(f"labels must lie in [0, {probs.shape[1]}), found {labels.min()}..{labels.max()}")
    return probs, labels.astype(np.int64)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    Unlike the normal approximation it stays inside [0, 1] and behaves near 0 and 1,
    which matters at 99%+ accuracy.
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At p = 0 or 1 one bound is exactly 0 or 1; say so rather than trust rounding.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """(K, K) int64 counts; row = true class, column = predicted class."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    flat = np.bincount(labels * n_classes + predicted, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def per_class_table(cm: np.ndarray):
    """pandas DataFrame indexed by class: precision, recall, f1, support.

    A class never predicted has precision 0 (and so F1 0), as scikit-learn reports it.
    """
    import pandas as pd

    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
    frame = pd.DataFrame({"precision": precision, "recall": recall, "f1": f1,
                          "support": support.astype(np.int64)})
    frame.index.name = "class"
    return frame


def most_confused_pairs(cm: np.ndarray, k: int = 10) -> list[dict[str, int]]:
    """The ``k`` largest off-diagonal cells: [{"true", "predicted", "count"}], most frequent first.

    Ties are broken by (true, predicted) so the list is stable.
    """
    cm = np.asarray(cm)
    pairs = [(int(cm[t, p]), t, p) for t in range(cm.shape[0]) for p in range(cm.shape[1])
             if t != p and cm[t, p] > 0]
    pairs.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [{"true": t, "predicted": p, "count": n} for n, t, p in pairs[:k]]


def confident_mistakes(probs: np.ndarray, labels: np.ndarray, k: int = 16) -> list[dict[str, Any]]:
    """The ``k`` wrong predictions made with the highest confidence.

    Returns [{"index", "true", "predicted", "confidence", "p_true"}]; ``index`` is the
    row in ``probs`` (map it to a source index with the predictions' index array).
    """
    probs, labels = _check(probs, labels)
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probs[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:k]
    return [{"index": int(i), "true": int(labels[i]), "predicted": int(predicted[i]),
             "confidence": float(probs[i, predicted[i]]), "p_true": float(probs[i, labels[i]])}
            for i in order]


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15):
    """Calibration of the top-class confidence in ``n_bins`` equal-width bins over [0, 1].

    Returns (table, ece): a DataFrame with one row per bin (lower, upper, count,
    confidence = mean top probability, accuracy = fraction correct, gap) and the
    expected calibration error, sum over bins of (count / N) * |accuracy - confidence|.
    Bins are right-closed, (lo, hi], with the first one also holding 0.
    """
    import pandas as pd

    probs, labels = _check(probs, labels)
    confidence = probs.max(axis=1).astype(np.float64)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).astype(np.int64)
    conf_sum = np.bincount(which, weights=confidence, minlength=n_bins)
    corr_sum = np.bincount(which, weights=correct, minlength=n_bins)
    nonempty = count > 0
    mean_conf = np.divide(conf_sum, count, out=np.full(n_bins, np.nan), where=nonempty)
    accuracy = np.divide(corr_sum, count, out=np.full(n_bins, np.nan), where=nonempty)
    gap = np.abs(accuracy - mean_conf)
    ece = float(np.sum(count[nonempty] / len(labels) * gap[nonempty]))
    table = pd.DataFrame({"lower": edges[:-1], "upper": edges[1:], "count": count,
                          "confidence": mean_conf, "accuracy": accuracy, "gap": gap})
    table.index.name = "bin"
    return table, ece


def summarize(probs: np.ndarray, labels: np.ndarray, n_pairs: int = 10, n_mistakes: int = 16,
              n_bins: int = 15) -> dict[str, Any]:
    """Everything above in one plain dict (JSON-ready except the two DataFrames).

    Keys: test_accuracy, ci95, n_test, n_errors, confusion (list of lists),
    per_class (dict class -> precision/recall/f1/support), per_class_table (DataFrame),
    most_confused_pairs, confident_mistakes, ece, reliability (DataFrame),
    mean_confidence, log_loss.
    """
    probs, labels = _check(probs, labels)
    n, k = probs.shape
    predicted = probs.argmax(axis=1)
    n_correct = int((predicted == labels).sum())
    cm = confusion_matrix(labels, predicted, k)
    table = per_class_table(cm)
    rel, ece = reliability(probs, labels, n_bins)
    p_true = probs[np.arange(n), labels].astype(np.float64)
    return {
        "test_accuracy": n_correct / n,
        "ci95": list(wilson_interval(n_correct, n)),
        "n_test": n,
        "n_errors": n - n_correct,
        "confusion": cm.tolist(),
        "per_class": {str(c): {"precision": float(r.precision), "recall": float(r.recall),
                               "f1": float(r.f1), "support": int(r.support)}
                      for c, r in table.iterrows()},
        "per_class_table": table,
        "macro_f1": float(table["f1"].mean()),
        "most_confused_pairs": most_confused_pairs(cm, n_pairs),
        "confident_mistakes": confident_mistakes(probs, labels, n_mistakes),
        "ece": ece,
        "reliability": rel,
        "mean_confidence": float(probs.max(axis=1).mean()),
        "log_loss": float(-np.mean(np.log(np.clip(p_true, 1e-12, 1.0)))),
    }
