"""Audit MNIST images and labels, and apply a cleaning policy.

The audit finds: labels of the wrong type or outside 0..9; exact duplicate
images inside a split (same pixel bytes); images shared by train and test
(leakage); near-empty images; and shape outliers (ink mass or bounding box far
from the digit's class, by z-score).

Policies (a setting, never a silent choice):
- ``keep``: audit and report only; the data and the flags table pass on untouched.
- ``flag`` (default): as ``keep``, and the per-image flags travel with the data so
  later stages can exclude or inspect them. Nothing is removed.
- ``drop``: remove flagged *training* images: extra copies of a duplicate (the
  first occurrence stays), every train image that also appears in test, near-empty
  images and outliers. The test split is never altered, because the test set is the
  benchmark: dropping from it would make accuracy incomparable with published figures.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.data.features import image_features

POLICIES = ("keep", "flag", "drop")
POLICY_NOTES = {
    "keep": "Audit only: every image kept, flags reported but not carried with the data.",
    "flag": "Default: every image kept; flagged images are marked in the 'flags' table, nothing is removed.",
    "drop": "Flagged training images removed (duplicate copies after the first, train images also in test, "
    "near-empty images, outliers); the test split is never altered so the benchmark stays comparable.",
}
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


def check_policy(policy: str) -> str:
    """Return ``policy`` if it is one of :data:`POLICIES`, else raise naming the choices."""
    if policy not in POLICIES:
        raise ValueError(f"unknown cleaning policy {policy!r}; choose one of {', '.join(POLICIES)}")
    return policy


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

    features : output of :func:`pipeline.features.image_features` (N rows); labels : (N,)
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


def flagged_examples(flags: pd.DataFrame, train_images: np.ndarray, test_images: np.ndarray, k: int = 16) -> dict:
    """Up to ``k`` flagged images to look at: leakage and duplicates first, then the most extreme |z|.

    returns: {"images": uint8 (K, H, W), "captions": K strings, "split": K, "index": K}
    """
    order = flags.assign(
        sort_rank=flags["reason"].map({"leakage": 0, "duplicate": 1, "near_empty": 2}).fillna(3),
        sort_z=-np.fmax(flags["z_ink_mass"].abs().fillna(0), flags["z_bbox_area"].abs().fillna(0)),
    ).sort_values(["sort_rank", "sort_z", "split", "index"])
    order = order.drop_duplicates(["split", "index"]).head(k)
    source = {"train": train_images, "test": test_images}
    h, w = train_images.shape[1:]
    images = np.stack([source[r.split][r.index] for r in order.itertuples()]) if len(order) else np.zeros((0, h, w), np.uint8)
    captions = [f"{r.split} #{r.index} ({r.label})\n{r.reason}" + (f" |z|={-r.sort_z:.1f}" if r.reason == "outlier" else "")
                for r in order.itertuples()]
    return {"images": images, "captions": captions, "split": order["split"].tolist(), "index": order["index"].tolist()}


# --------------------------------------------------------------------------- the audit
@dataclass
class CleanResult:
    """What :func:`clean` returns: the kept data, their source indices, and the report."""

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
    examples: dict = field(default_factory=dict)


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
    policy: str = "flag",
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
        examples=flagged_examples(flags, train_images, test_images),
    )
