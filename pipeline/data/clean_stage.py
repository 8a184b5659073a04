"""The cleaning stage: read the raw MNIST files, audit them, apply the policy, and describe the
outcome as one :class:`~pipeline.result.StageResult`.

Its artifacts are ``cleaned`` (the plain dict later stages load, see :func:`cleaned_artifact`) and
the full findings ``duplicates``, ``leakage`` and ``flags`` (DataFrames); its summary is the
audit report of :func:`pipeline.data.clean.clean`.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.acquire.files import BY_NAME, SPLIT_FILES
from pipeline.acquire.idx import read_pair
from pipeline.data.audit import CleanSettings
from pipeline.data.clean import CleanResult, clean
from pipeline.figures import image_grid
from pipeline.progress import ProgressFn, ignore
from pipeline.result import Figure, StageResult, Table

EXAMPLES = 16  # flagged images drawn in the figure
# The order flagged images are shown in: the certain findings first, then outliers by |z|.
REASON_RANK = {"leakage": 0, "duplicate": 1, "near_empty": 2, "outlier": 3}
REASON_WORDS = {"leakage": "also in test", "duplicate": "duplicate copies", "near_empty": "near-empty",
                "outlier": "outliers"}


def read_splits(raw_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images uint8 (60000, 28, 28), labels uint8 (60000,)), "test": (... 10000 ...)}
    from the IDX files in ``raw_dir``, each checked against MNIST's pinned content hash first
    (nothing under the data directory is trusted because it is there)."""
    raw_dir = Path(raw_dir)
    return {split: read_pair(raw_dir / images, raw_dir / labels, (BY_NAME[images].sha256, BY_NAME[labels].sha256))
            for split, (images, labels) in SPLIT_FILES.items()}


def cleaned_artifact(result: CleanResult) -> dict:
    """The dict later stages load (``cleaned.pkl``): train_images uint8 (N, 28, 28), train_labels
    int64 (N,), test_images uint8 (10000, 28, 28), test_labels int64, train_source_index /
    test_source_index int64 (rows of the original files), policy str, flags DataFrame."""
    return {
        "train_images": result.train_images,
        "train_labels": result.train_labels.astype(np.int64),
        "test_images": result.test_images,
        "test_labels": result.test_labels.astype(np.int64),
        "train_source_index": result.train_source_index,
        "test_source_index": result.test_source_index,
        "policy": result.policy,
        "flags": result.flags,
    }


def flagged_examples(flags: pd.DataFrame, train_images: np.ndarray, test_images: np.ndarray,
                     k: int = EXAMPLES) -> dict:
    """Up to ``k`` flagged images to look at: leakage and duplicates first, then the most extreme |z|.

    flags : the full flags table (:data:`~pipeline.data.audit.FLAG_COLUMNS`); *_images : uint8 (N, H, W),
            the arrays the flags' indices point into.
    returns: {"images": uint8 (K, H, W), "captions": K strings, "split", "index", "reason": K each}
    """
    order = flags.assign(
        sort_rank=flags["reason"].map(REASON_RANK).fillna(len(REASON_RANK)),
        sort_z=-np.fmax(flags["z_ink_mass"].abs().fillna(0), flags["z_bbox_area"].abs().fillna(0)),
    ).sort_values(["sort_rank", "sort_z", "split", "index"])
    order = order.drop_duplicates(["split", "index"]).head(k)
    source = {"train": train_images, "test": test_images}
    h, w = train_images.shape[1:]
    images = (np.stack([source[r.split][r.index] for r in order.itertuples()]) if len(order)
              else np.zeros((0, h, w), np.uint8))
    captions = [f"{r.split} #{r.index} ({r.label})\n{r.reason}" + (f" |z|={-r.sort_z:.1f}" if r.reason == "outlier" else "")
                for r in order.itertuples()]
    return {"images": images, "captions": captions, "split": order["split"].tolist(),
            "index": order["index"].tolist(), "reason": order["reason"].tolist()}


def flagged_caption(examples: dict, report: dict) -> str:
    """What the flagged-images figure shows, in numbers from the audit ``report``."""
    settings, flags = report["settings"], report["flags"]
    policy = f"Policy '{report['policy']}': {report['policy_note']}"
    total = flags["flagged_train_images"] + flags["flagged_test_images"]
    if total == 0:
        return (f"No image was flagged: no duplicates, no train/test leakage, no image with fewer than "
                f"{settings['min_ink_pixels']} ink pixels, and no within-class |z| of ink mass or bounding-box "
                f"area above {settings['z_threshold']:g}. {policy}")
    shown = Counter(examples["reason"])
    parts = ", ".join(f"{shown[r]} {REASON_WORDS.get(r, r)}" for r in sorted(shown, key=lambda r: REASON_RANK.get(r, len(REASON_RANK))))
    return (f"{len(examples['reason'])} of the {total:,} flagged images ({flags['flagged_train_images']:,} train, "
            f"{flags['flagged_test_images']:,} test): leakage and duplicates first, then near-empty images "
            f"(fewer than {settings['min_ink_pixels']} ink pixels), then the images with the most extreme "
            f"within-class z-score of ink mass or bounding-box area (|z| > {settings['z_threshold']:g}). "
            f"Shown here: {parts}. {policy}")


def clean_stage(raw_dir: str | os.PathLike, policy: str, settings: CleanSettings | None = None,
                progress: ProgressFn = ignore) -> StageResult:
    """Audit and clean the MNIST files in ``raw_dir`` under ``policy`` (see :mod:`pipeline.data.policy`)."""
    progress(0.0, "reading IDX files")
    splits = read_splits(raw_dir)
    return clean_splits(*splits["train"], *splits["test"], policy=policy, settings=settings, progress=progress)


def clean_splits(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                 test_labels: np.ndarray, policy: str, settings: CleanSettings | None = None,
                 progress: ProgressFn = ignore) -> StageResult:
    """The cleaning stage on arrays: train_images uint8 (N, 28, 28), train_labels (N,) ints in 0..9;
    test_* likewise (M, ...)."""
    progress(0.2, "auditing duplicates, leakage and outliers")
    result = clean(train_images, train_labels, test_images, test_labels, policy=policy, settings=settings)
    report = result.report
    counts, duplicates, flags = report["counts"], report["duplicates"], report["flags"]
    headline = [
        ("Cleaning policy", result.policy),
        ("Training images before", counts["before"]["train"]),
        ("Training images after", counts["after"]["train"]),
        ("Test images (never altered)", counts["after"]["test"]),
        ("Duplicate copies (train)", duplicates["train"]["extra_copies"]),
        ("Duplicate copies (test)", duplicates["test"]["extra_copies"]),
        ("Train/test leakage pairs", report["leakage"]["pairs"]),
        ("Flagged training images", flags["flagged_train_images"]),
        ("Flagged test images", flags["flagged_test_images"]),
    ]
    tables = [
        Table("counts", "Image counts before and after cleaning", result.tables["counts"]),
        Table("label_audit", "Label type and range per split", result.tables["label_audit"]),
        Table("flag_summary", "Flagged images per split, reason and digit", result.tables["flag_summary"]),
    ]
    progress(0.8, "drawing the flagged images")
    # The full flags (not result.flags, which is empty under 'keep') point into the arrays given.
    examples = flagged_examples(result.tables["flags"], train_images, test_images)
    grid = image_grid(examples["images"], examples["captions"], "Flagged images (split #index (label), reason)",
                      cell=(1.4, 1.6), vmin=0, vmax=255, empty_text="no flagged images")
    figure = Figure("flagged_examples", "Flagged images", flagged_caption(examples, report), grid)
    artifacts = {"cleaned": cleaned_artifact(result),
                 **{name: result.tables[name] for name in ("duplicates", "leakage", "flags")}}
    progress(1.0, f"{counts['after']['train']} training images kept ({result.policy})")
    return StageResult(title="Cleaning", summary=report, headline=headline, tables=tables, figures=[figure],
                       artifacts=artifacts)
