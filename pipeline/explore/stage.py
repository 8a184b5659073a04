"""The exploration stage: statistics, tables and figures of the prepared splits, as one
:class:`~pipeline.result.StageResult`.

It reads the prepared splits (labels and source indices) and the cleaned uint8 images, so
features and histograms are on raw pixel values whatever the normalisation. Tables:
class_distribution, feature_summary, mean_similarity. Artifacts: pixel_histogram (256 rows),
features (one row per image), class_images {"mean", "std"} (10, 28, 28), pca (projection,
labels, components). Figures: class_distribution, class_images, pixel_histogram,
features_by_class, pca_2d, mean_similarity, each captioned from the numbers it shows.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.explore import figures
from pipeline.explore.stats import explore_splits
from pipeline.progress import ProgressFn, ignore
from pipeline.result import Figure, StageResult, Table

SPLITS = ("train", "val", "test")


def rows_for_sources(available: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions in ``available`` (sorted source indices) of each of ``wanted``.

    Maps a prepared split's source indices to rows of the cleaned uint8 arrays; raises if
    one is missing, since that means the two inputs come from different runs.
    """
    available = np.asarray(available)
    wanted = np.asarray(wanted)
    pos = np.searchsorted(available, wanted)
    ok = (pos < len(available)) & (available[np.minimum(pos, len(available) - 1)] == wanted)
    if wanted.size and not ok.all():
        missing = wanted[~ok][:5].tolist()
        raise ValueError(
            f"source indices {missing} are not in the cleaned data: the prepared and cleaned inputs "
            "come from different runs; rebuild both with the same clean_policy"
        )
    return pos


def raw_splits(prepared: dict[str, Any], cleaned: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The raw uint8 images (N, 28, 28) and int64 labels (N,) of each prepared split, by name.

    prepared : the preparation stage's ``data`` artifact; cleaned : the cleaning stage's ``cleaned`` artifact.
    """
    images, labels = {}, {}
    for split in SPLITS:
        pool = "test" if split == "test" else "train"
        rows = rows_for_sources(cleaned[f"{pool}_source_index"], prepared[f"{split}_source_index"])
        images[split] = cleaned[f"{pool}_images"][rows]
        labels[split] = prepared[f"y_{split}"]
        if not np.array_equal(cleaned[f"{pool}_labels"][rows], labels[split]):
            raise ValueError(f"{split} labels of the prepared and cleaned data disagree; rebuild both")
    return images, labels


def explore_stage(prepared: dict[str, Any], cleaned: dict[str, Any], clean_summary: dict[str, Any],
                  rng: np.random.Generator, pca_sample: int = 3000, progress: ProgressFn = ignore) -> StageResult:
    """Explore the prepared splits.

    prepared, cleaned : see :func:`raw_splits`; clean_summary : the cleaning stage's summary (its
    audit report); rng : the run's Generator, which draws the PCA sample of ``pca_sample`` images.
    """
    images, labels = raw_splits(prepared, cleaned)
    progress(0.1, "computing statistics")
    result = explore_splits(images, labels, rng, pca_sample)
    stats = result["stats"]
    cleaning = {
        "policy": clean_summary["policy"],
        "duplicate_copies": {s: clean_summary["duplicates"][s]["extra_copies"] for s in ("train", "test")},
        "leakage_pairs": clean_summary["leakage"]["pairs"],
        "flagged_train_images": clean_summary["flags"]["flagged_train_images"],
        "flagged_test_images": clean_summary["flags"]["flagged_test_images"],
    }
    summary = {**stats, "cleaning": cleaning, "normalization": prepared["normalization"],
               "seed": int(prepared["seed"])}

    progress(0.5, "drawing figures")
    train_features = result["features"][result["features"]["split"] == "train"]
    drawn = [
        Figure("class_distribution", "Class distribution",
               figures.class_distribution_caption(result["distribution"]),
               figures.class_distribution_figure(result["distribution"])),
        Figure("class_images", "Per-class mean and standard-deviation images",
               figures.class_images_caption(result["std"], len(labels["train"])),
               figures.class_images_figure(result["mean"], result["std"])),
        Figure("pixel_histogram", "Pixel-intensity histogram",
               figures.pixel_histogram_caption(result["histogram"]),
               figures.pixel_histogram_figure(result["histogram"])),
        Figure("features_by_class", "Per-image features by class",
               figures.features_by_class_caption(result["feature_summary"], stats["share_bbox_height_20_train"]),
               figures.features_by_class_figure(train_features, labels["train"])),
        Figure("pca_2d", "PCA projection", figures.pca_caption(result["pca"]), figures.pca_figure(result["pca"])),
        Figure("mean_similarity", "Similarity of class mean images",
               figures.mean_similarity_caption(result["similarity"]),
               figures.mean_similarity_figure(result["similarity"])),
    ]
    tables = [
        Table("class_distribution", "Class counts and shares per split", result["distribution"]),
        Table("feature_summary", "Per-class feature means and standard deviations (training split)",
              result["feature_summary"]),
        Table("mean_similarity", "Cosine similarity of class mean images", result["similarity"]),
    ]
    artifacts = {
        "pixel_histogram": result["histogram"],
        "features": result["features"],
        "class_images": {"mean": result["mean"], "std": result["std"]},
        "pca": result["pca"],
    }
    progress(1.0, "exploration done")
    return StageResult(title="Exploration", summary=summary, headline=exploration_headline(summary),
                       tables=tables, figures=drawn, artifacts=artifacts)


def exploration_headline(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """The numbers a reader sees first: split sizes, pixels, ink, PCA, similarity, and what cleaning found."""
    n, pixels, cleaning = summary["n_images"], summary["pixels_train"], summary["cleaning"]
    closest = summary["most_similar_mean_images"][0]
    return [
        ("Training images", n["train"]),
        ("Validation images", n["val"]),
        ("Test images", n["test"]),
        ("Background (0) share of training pixels", f"{pixels['share_zero']:.1%}"),
        ("Mean ink mass, training (full-ink pixels)", round(summary["mean_ink_mass"]["train"], 1)),
        ("Mean slant, training (degrees)", round(summary["mean_slant_deg_train"], 1)),
        ("Variance in the first two principal components", f"{sum(summary['pca_explained_variance_ratio'][:2]):.1%}"),
        ("Most similar class means", f"{closest['a']} & {closest['b']} (cosine {closest['cosine']:.3f})"),
        ("Cleaning policy", cleaning["policy"]),
        ("Duplicate copies, train / test",
         f"{cleaning['duplicate_copies']['train']} / {cleaning['duplicate_copies']['test']}"),
        ("Train/test leakage pairs", cleaning["leakage_pairs"]),
        ("Flagged training images", cleaning["flagged_train_images"]),
        ("Normalization", summary["normalization"]["method"]),
        ("Seed", summary["seed"]),
    ]
