"""The audit of MNIST images and labels: what is wrong with them, found without changing anything.

It finds: labels of the wrong type or outside 0..9; exact duplicate images inside
a split (same pixel bytes); images shared by train and test (leakage); near-empty
images; and shape outliers (ink mass or bounding box far from the digit's class,
by z-score). What to do about them is the cleaning policy's business
(:mod:`pipeline.data.clean`).

``duplicate_groups`` has its obvious oracle ``duplicate_groups_reference`` beside it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

FLAG_COLUMNS = ["split", "index", "label", "reason", "detail", "z_ink_mass", "z_bbox_area"]
# Outliers are judged on ink mass and bounding-box area, not on width or height
# alone: MNIST scales each digit so its larger side is 20 px, so height is 20 for
# 91% of images and its tiny spread makes z-scores explode on ordinary wide digits.
Z_FEATURES = ("ink_mass", "bbox_area")


@dataclass(frozen=True)
class CleanSettings:
    """Thresholds of the audit.

    z_threshold    : an image is an outlier when |z| of its ink mass or bounding-box
                     area, within its class, exceeds this (4 flags ~0.1% of MNIST).
    min_ink_pixels : an image with fewer non-zero pixels than this is near-empty.
    """

    z_threshold: float = 4.0
    min_ink_pixels: int = 20

    def __post_init__(self) -> None:
        if not self.z_threshold > 0:
            raise ValueError(f"z_threshold must be > 0, got {self.z_threshold}")
        if self.min_ink_pixels < 0:
            raise ValueError(f"min_ink_pixels must be >= 0, got {self.min_ink_pixels}")


# --------------------------------------------------------------------------- hashing
def pixel_hashes(images: np.ndarray) -> np.ndarray:
    """A 16-byte blake2b digest of each image's pixel bytes.

    images : uint8 ndarray of shape (N, H, W)
    returns: ndarray of dtype S16 and shape (N,). Equal images have equal digests;
    a collision between different images has probability ~2**-128.
    """
    flat = np.ascontiguousarray(images).reshape(len(images), -1) if len(images) else []
    return np.array([hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat], dtype="S16")


def _groups_of_equal(keys: np.ndarray) -> list[np.ndarray]:
    """Index arrays (ascending) of the keys that occur more than once, in O(N log N)."""
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")          # positions grouped by key, ascending within
    bounds = np.cumsum(counts)[:-1]
    return [g for g in np.split(order, bounds) if g.size > 1]


# --------------------------------------------------------------------------- duplicates and leakage
def duplicate_groups(images: np.ndarray, labels: np.ndarray, split: str) -> pd.DataFrame:
    """Groups of identical images within one split.

    images : uint8 (N, H, W); labels : (N,)
    returns: one row per group with >= 2 members: split, first index, all indices
             (ascending), count, the labels seen and whether they disagree.
    """
    hashes = pixel_hashes(images)
    rows = []
    for idx in _groups_of_equal(hashes):
        group_labels = sorted({int(v) for v in labels[idx]})
        rows.append(
            {
                "split": split,
                "first_index": int(idx[0]),
                "indices": idx.tolist(),
                "count": int(idx.size),
                "labels": group_labels,
                "label_conflict": len(group_labels) > 1,
            }
        )
    cols = ["split", "first_index", "indices", "count", "labels", "label_conflict"]
    return pd.DataFrame(rows, columns=cols).sort_values("first_index", ignore_index=True)


def duplicate_groups_reference(images: np.ndarray) -> list[list[int]]:
    """Duplicate groups by comparing raw bytes in a dict: the obvious oracle."""
    seen: dict[bytes, list[int]] = {}
    for i, img in enumerate(images):
        seen.setdefault(np.ascontiguousarray(img).tobytes(), []).append(i)
    return sorted(v for v in seen.values() if len(v) > 1)


def cross_duplicates(
    train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray
) -> pd.DataFrame:
    """Every (train index, test index) pair of identical images: train/test leakage.

    returns: DataFrame with columns train_index, test_index, train_label, test_label, same_label.
    """
    train_h, test_h = pixel_hashes(train_images), pixel_hashes(test_images)
    in_test = np.isin(train_h, test_h)
    test_by_hash: dict[bytes, list[int]] = {}
    for j in np.flatnonzero(np.isin(test_h, train_h[in_test])):
        test_by_hash.setdefault(test_h[j], []).append(int(j))
    rows = [
        (int(i), j, int(train_labels[i]), int(test_labels[j]))
        for i in np.flatnonzero(in_test)
        for j in test_by_hash[train_h[i]]
    ]
    frame = pd.DataFrame(rows, columns=["train_index", "test_index", "train_label", "test_label"])
    frame["same_label"] = frame["train_label"] == frame["test_label"]
    return frame.sort_values(["train_index", "test_index"], ignore_index=True)


# --------------------------------------------------------------------------- labels
def label_audit(labels: np.ndarray, split: str, n_classes: int = 10) -> dict:
    """Type, range and counts of a label array of shape (N,)."""
    labels = np.asarray(labels)
    integer = np.issubdtype(labels.dtype, np.integer)
    in_range = bool(integer and (labels.size == 0 or (labels.min() >= 0 and labels.max() < n_classes)))
    counts = np.bincount(labels.astype(np.int64), minlength=n_classes) if in_range else None
    return {
        "split": split,
        "dtype": str(labels.dtype),
        "integer": bool(integer),
        "n": int(labels.size),
        "min": int(labels.min()) if labels.size else None,
        "max": int(labels.max()) if labels.size else None,
        "in_range": in_range,
        "counts": counts.tolist() if counts is not None else None,
    }


def check_labels(labels: np.ndarray, split: str, n_classes: int = 10) -> None:
    """Raise if labels are not integers in 0..n_classes-1: no policy can repair that."""
    audit = label_audit(labels, split, n_classes)
    if not audit["in_range"]:
        raise ValueError(
            f"{split} labels must be integers in 0..{n_classes - 1}, got dtype {audit['dtype']} "
            f"with range {audit['min']}..{audit['max']}; the label file is wrong: fetch it again"
        )


# --------------------------------------------------------------------------- outliers
def class_zscores(values: np.ndarray, labels: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """z-score of each value within its own class: (v - mean_c) / std_c, 0 where std_c is 0.

    values : float (N,); labels : int (N,); returns float64 (N,).
    Within-class because a '1' is naturally narrow: a global z-score would flag every 1.
    """
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    count = np.bincount(labels, minlength=n_classes).astype(np.float64)
    total = np.bincount(labels, weights=values, minlength=n_classes)
    mean = np.divide(total, count, out=np.zeros(n_classes), where=count > 0)
    sq = np.bincount(labels, weights=(values - mean[labels]) ** 2, minlength=n_classes)
    std = np.sqrt(np.divide(sq, count, out=np.zeros(n_classes), where=count > 0))
    std_l = std[labels]
    return np.divide(values - mean[labels], std_l, out=np.zeros_like(values), where=std_l > 0)


def shape_flags(features: pd.DataFrame, labels: np.ndarray, split: str, settings: CleanSettings) -> pd.DataFrame:
    """Near-empty and outlier images of one split, with their z-scores.

    features : output of :func:`pipeline.data.features.image_features` (N rows); labels : (N,)
    returns  : rows in :data:`FLAG_COLUMNS` form, reason "near_empty" or "outlier".
    """
    area = (features["bbox_width"] * features["bbox_height"]).to_numpy()
    z = {
        "ink_mass": class_zscores(features["ink_mass"].to_numpy(), labels),
        "bbox_area": class_zscores(area, labels),
    }
    near_empty = features["ink_pixels"].to_numpy() < settings.min_ink_pixels
    worst = np.max(np.abs(np.stack(list(z.values()))), axis=0)
    outlier = (worst > settings.z_threshold) & ~near_empty
    rows = []
    for reason, mask in (("near_empty", near_empty), ("outlier", outlier)):
        for i in np.flatnonzero(mask):
            if reason == "near_empty":
                detail = f"{int(features['ink_pixels'].iat[i])} ink pixels < {settings.min_ink_pixels}"
            else:
                col = max(z, key=lambda c: abs(z[c][i]))
                detail = f"|z| of {col} = {abs(z[col][i]):.1f} > {settings.z_threshold:g}"
            rows.append(
                (split, int(i), int(labels[i]), reason, detail, z["ink_mass"][i], z["bbox_area"][i])
            )
    return pd.DataFrame(rows, columns=FLAG_COLUMNS)


def flag_summary(flags: pd.DataFrame) -> pd.DataFrame:
    """Number of flagged images per split and reason, by digit (a small table for the report)."""
    table = pd.crosstab([flags["split"], flags["reason"]], flags["label"]).reindex(columns=range(10), fill_value=0)
    table["total"] = table.sum(axis=1)
    return table
