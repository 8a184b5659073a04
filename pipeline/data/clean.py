"""Apply a cleaning policy to audited MNIST splits, and state what was found and done.

:func:`clean` runs the audit (:mod:`pipeline.data.audit`) on both splits, turns
its findings into one table of per-image flags, applies the policy
(:mod:`pipeline.data.policy`) to the training split, and reports the counts
before and after. The test split is never altered, whatever the policy.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.data.audit import (FLAG_COLUMNS, CleanSettings, check_labels, cross_duplicates, duplicate_groups,
                                 flag_summary, label_audit, shape_flags)
from pipeline.data.features import image_features
from pipeline.data.policy import DEFAULT_POLICY, POLICY_NOTES, check_policy


@dataclass
class CleanResult:
    """What :func:`clean` returns: the kept data, their source indices, and the report.

    train_images uint8 (N', H, W) and train_labels (N',): the kept training rows, N' <= N;
    test_images uint8 (M, H, W) and test_labels (M,): the test split, unaltered;
    *_source_index int64: the row of each kept image in the arrays given (the original files);
    flags: one row per (image, reason) in :data:`~pipeline.data.audit.FLAG_COLUMNS` form, empty
    under ``keep``; report: the JSON-able findings; tables: the findings as DataFrames.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    train_source_index: np.ndarray
    test_source_index: np.ndarray
    policy: str
    flags: pd.DataFrame
    report: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def _duplicate_flags(groups: pd.DataFrame, labels: np.ndarray, split: str) -> list[tuple]:
    rows = []
    for group in groups.itertuples():
        for i in group.indices[1:]:  # the first occurrence is the one kept
            rows.append((split, i, int(labels[i]), "duplicate", f"copy of {split} image {group.first_index}",
                         np.nan, np.nan))
    return rows


def clean(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    policy: str = DEFAULT_POLICY,
    settings: CleanSettings | None = None,
) -> CleanResult:
    """Audit both splits and apply ``policy``.

    train_images : uint8 (N, 28, 28), train_labels : (N,) ints in 0..9; test_* likewise (M, ...).
    Indices in the report and flags are positions in the arrays given (the original files).
    """
    check_policy(policy)
    settings = settings or CleanSettings()
    check_labels(train_labels, "train")
    check_labels(test_labels, "test")
    for name, imgs in (("train", train_images), ("test", test_images)):
        if imgs.dtype != np.uint8 or imgs.ndim != 3:
            raise ValueError(f"{name} images must be uint8 of shape (N, H, W), got {imgs.dtype} {imgs.shape}")
        if len(imgs) == 0:
            raise ValueError(f"the {name} split has no images; the input files are empty: fetch them again")

    dup_train = duplicate_groups(train_images, train_labels, "train")
    dup_test = duplicate_groups(test_images, test_labels, "test")
    leakage = cross_duplicates(train_images, train_labels, test_images, test_labels)
    feats_train = image_features(train_images)
    feats_test = image_features(test_images)

    flag_rows = _duplicate_flags(dup_train, train_labels, "train") + _duplicate_flags(dup_test, test_labels, "test")
    for i, j, a, b in leakage[["train_index", "test_index", "train_label", "test_label"]].itertuples(index=False):
        flag_rows.append(("train", int(i), int(a), "leakage", f"identical to test image {j} (label {b})",
                          np.nan, np.nan))
    flags = pd.concat(
        [
            pd.DataFrame(flag_rows, columns=FLAG_COLUMNS),
            shape_flags(feats_train, train_labels, "train", settings),
            shape_flags(feats_test, test_labels, "test", settings),
        ],
        ignore_index=True,
    ).astype({"index": np.int64, "label": np.int64})
    flags = flags.sort_values(["split", "index", "reason"], ignore_index=True)

    keep_train = np.ones(len(train_images), dtype=bool)
    if policy == "drop":
        keep_train[flags.loc[flags["split"] == "train", "index"].to_numpy()] = False
    train_src = np.flatnonzero(keep_train).astype(np.int64)
    test_src = np.arange(len(test_images), dtype=np.int64)

    def reason_counts(split: str) -> dict:
        sub = flags[flags["split"] == split]
        return {r: int(n) for r, n in sub.groupby("reason")["index"].nunique().items()}

    report = {
        "policy": policy,
        "policy_note": POLICY_NOTES[policy],
        "test_altered": False,
        "settings": {"z_threshold": settings.z_threshold, "min_ink_pixels": settings.min_ink_pixels},
        "labels": {"train": label_audit(train_labels, "train"), "test": label_audit(test_labels, "test")},
        "duplicates": {
            split: {
                "groups": int(len(g)),
                "images_in_groups": int(g["count"].sum()),
                "extra_copies": int((g["count"] - 1).sum()),
                "label_conflicts": int(g["label_conflict"].sum()),
            }
            for split, g in (("train", dup_train), ("test", dup_test))
        },
        "leakage": {
            "pairs": int(len(leakage)),
            "train_indices": sorted({int(v) for v in leakage["train_index"]}),
            "test_indices": sorted({int(v) for v in leakage["test_index"]}),
            "label_disagreements": int((~leakage["same_label"]).sum()),
        },
        "flags": {"train": reason_counts("train"), "test": reason_counts("test"),
                  "flagged_train_images": int(flags.loc[flags["split"] == "train", "index"].nunique()),
                  "flagged_test_images": int(flags.loc[flags["split"] == "test", "index"].nunique())},
        "counts": {
            "before": {"train": int(len(train_images)), "test": int(len(test_images))},
            "after": {"train": int(train_src.size), "test": int(test_src.size)},
            "dropped": {"train": int(len(train_images) - train_src.size), "test": 0},
        },
        "ink_mass": {
            "train_mean": float(feats_train["ink_mass"].mean()),
            "test_mean": float(feats_test["ink_mass"].mean()),
        },
    }
    tables = {
        "label_audit": pd.DataFrame([report["labels"]["train"], report["labels"]["test"]]).set_index("split"),
        "duplicates": pd.concat([dup_train, dup_test], ignore_index=True),
        "leakage": leakage,
        "flags": flags,
        "counts": pd.DataFrame(report["counts"]).T[["train", "test"]],
        "flag_summary": flag_summary(flags),
    }
    return CleanResult(
        train_images=train_images[train_src],
        train_labels=train_labels[train_src],
        test_images=test_images,
        test_labels=test_labels,
        train_source_index=train_src,
        test_source_index=test_src,
        policy=policy,
        flags=flags if policy != "keep" else flags.iloc[0:0],
        report=report,
        tables=tables,
    )
