"""The preparation stage: normalise the cleaned images and split off a stratified, seeded validation
set, as one :class:`~pipeline.result.StageResult` whose ``data`` artifact is the model input.

The normalisation statistics are fitted on the training part of the split only and applied
unchanged to validation and test (:mod:`pipeline.data.normalize`); the split is drawn from
``np.random.default_rng(seed)`` (:mod:`pipeline.data.split`): same seed, same split, bit for bit.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.data import normalize, split
from pipeline.progress import ProgressFn, ignore
from pipeline.result import StageResult

SPLITS = ("train", "val", "test")


def prepare_stage(cleaned: dict[str, Any], seed: int, val_fraction: float, normalization: str,
                  train_limit: int = 0, progress: ProgressFn = ignore) -> StageResult:
    """Normalise and split the cleaned data (see :func:`pipeline.data.clean_stage.cleaned_artifact`).

    train_limit > 0 keeps only the first ``train_limit`` cleaned training images, before the split.
    The ``data`` artifact (``data.pkl``) is a plain dict: x_train / x_val / x_test float32
    (N, 1, 28, 28), y_* int64 (N,), *_source_index int64 (rows of the original IDX files),
    normalization {"method", "min", "max", "mean", "std"} fitted on x_train only,
    class_counts {"train": [10], "val": [10], "test": [10]}, seed int.
    """
    x, y = cleaned["train_images"], cleaned["train_labels"].astype(np.int64)
    src = cleaned["train_source_index"].astype(np.int64)
    if train_limit > 0:
        x, y, src = x[:train_limit], y[:train_limit], src[:train_limit]

    rng = np.random.default_rng(seed)  # the one Generator of this stage: draws the validation split
    tr, va = split.stratified_split(y, val_fraction, rng)
    proportions = split.check_proportions(y[tr], y[va])
    stats = normalize.fit_normalizer(x[tr], normalization)
    progress(0.5, f"normalising ({normalization})")

    y_test = cleaned["test_labels"].astype(np.int64)
    counts = {name: np.bincount(labels, minlength=10).tolist()
              for name, labels in (("train", y[tr]), ("val", y[va]), ("test", y_test))}
    data = {
        "x_train": normalize.apply_normalizer(x[tr], stats),
        "y_train": y[tr],
        "x_val": normalize.apply_normalizer(x[va], stats),
        "y_val": y[va],
        "x_test": normalize.apply_normalizer(cleaned["test_images"], stats),
        "y_test": y_test,
        "train_source_index": src[tr],
        "val_source_index": src[va],
        "test_source_index": cleaned["test_source_index"].astype(np.int64),
        "normalization": stats,
        "class_counts": counts,
        "seed": int(seed),
    }
    summary = {
        "n_train": int(tr.size),
        "n_val": int(va.size),
        "n_test": int(y_test.size),
        "class_counts": counts,
        "normalization": stats,
        "normalization_note": "statistics fitted on the training split only, applied unchanged to val and test",
        "proportion_check": proportions,
        "seed": int(seed),
        "train_limit": int(train_limit),
        "val_fraction": float(val_fraction),
        "clean_policy": cleaned["policy"],
        "value_range": {f"x_{name}": [float(data[f"x_{name}"].min()), float(data[f"x_{name}"].max())]
                        for name in SPLITS},
    }
    progress(1.0, f"{tr.size} train / {va.size} val / {y_test.size} test")
    return StageResult(title="Preparation", summary=summary, headline=preparation_headline(summary),
                       artifacts={"data": data})


def preparation_headline(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """The numbers a reader sees first: split sizes, the fitted normalisation and the value ranges."""
    stats = summary["normalization"]
    ranges = summary["value_range"]
    return [
        ("Training images", summary["n_train"]),
        ("Validation images", summary["n_val"]),
        ("Test images", summary["n_test"]),
        ("Normalization", stats["method"]),
        ("Training pixel min / max (raw)", f"{stats['min']} / {stats['max']}"),
        ("Training pixel mean / std (on [0, 1])", f"{stats['mean']:.4f} / {stats['std']:.4f}"),
        *((f"Value range of x_{name}", f"{ranges[f'x_{name}'][0]:.4g} to {ranges[f'x_{name}'][1]:.4g}")
          for name in SPLITS),
        ("Largest class-share gap, train vs validation", f"{summary['proportion_check']['max_abs_diff']:.4%}"),
        ("Split seed", summary["seed"]),
    ]
