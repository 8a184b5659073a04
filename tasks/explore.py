"""ExploreData: statistics, tables and figures of the prepared splits, for the report."""
from __future__ import annotations

import luigi
from luigi.util import inherits

from tasks.base import PipelineTask
from tasks.data import CleanData
from tasks.data import PrepareData

FIGURES = [
    ("class_distribution.png", "Class distribution",
     "Share of each digit in the training, validation and test splits; the dashed line is a perfectly "
     "balanced 10%. The stratified split keeps train and validation shares equal."),
    ("class_images.png", "Per-class mean and standard-deviation images",
     "Top: average training image of each digit. Bottom: pixel-wise standard deviation, where writers disagree."),
    ("pixel_histogram.png", "Pixel-intensity histogram",
     "Raw intensities of every training pixel: about 81% background (0), a peak of saturated ink near "
     "the top of the range, and a flat band of anti-aliased edge values in between."),
    ("features_by_class.png", "Per-image features by class",
     "Ink mass, bounding-box width, aspect ratio and slant (from second moments) of each training image, by "
     "digit. Height is left out of the plot (see the table): MNIST scales the longer side of each digit to "
     "20 px, so nearly all heights are 20."),
    ("pca_2d.png", "PCA projection",
     "A seeded random sample of training images projected on the first two principal components, "
     "coloured by digit; numbers mark class centroids."),
    ("mean_similarity.png", "Similarity of class mean images",
     "Cosine similarity between the per-class mean images; the brightest off-diagonal cells are the "
     "digit pairs whose average shapes overlap most."),
]
TABLES = [
    ("class_distribution.pkl", "Class counts and shares per split"),
    ("feature_summary.pkl", "Per-class feature means and standard deviations (training split)"),
    ("mean_similarity.pkl", "Cosine similarity of class mean images"),
]


@inherits(PrepareData)
class ExploreData(PipelineTask):
    """Write ``data_dir/explore/explore-<hash>/``: explore.json (last), PNG figures, pickled DataFrames.

    Reads the prepared splits (labels and source indices) and the cleaned uint8
    images, so features and histograms are on raw pixel values whatever the
    normalisation. Pickles: class_distribution, feature_summary, mean_similarity,
    pixel_histogram (256 rows), features (one row per image), class_images
    {"mean", "std"} (10, 28, 28), pca (projection, labels, components).
    """

    stage = "explore"
    primary = "explore.json"

    pca_sample = luigi.IntParameter(default=3000, description="training images drawn (seeded) for the PCA plot")

    def slug_prefix(self) -> str:
        return "explore-"

    def requires(self):
        return {"prepared": self.clone(PrepareData), "cleaned": self.clone(CleanData)}

    def run(self):
        import numpy as np

        from pipeline import explore, explore_plots, store

        prepared = store.read_pickle(self.input()["prepared"].path)
        cleaned = store.read_pickle(self.input()["cleaned"].path)
        clean_report = store.read_json(self.input_dir("cleaned") / "clean_report.json")
        images, labels = {}, {}
        for split in ("train", "val", "test"):
            pool = "test" if split == "test" else "train"
            rows = explore.rows_for_sources(cleaned[f"{pool}_source_index"], prepared[f"{split}_source_index"])
            images[split] = cleaned[f"{pool}_images"][rows]
            labels[split] = prepared[f"y_{split}"]
            if not np.array_equal(cleaned[f"{pool}_labels"][rows], labels[split]):
                raise ValueError(f"{split} labels of the prepared and cleaned data disagree; rerun both tasks")

        self.progress(0.1, "computing statistics")
        rng = np.random.default_rng(self.seed)  # the one Generator of this task: draws the PCA sample
        result = explore.explore_splits(images, labels, rng, self.pca_sample)
        stats = result["stats"]
        summary = {
            **stats,
            # scalar headline numbers (the report lists top-level scalars)
            "n_train": stats["n_images"]["train"],
            "n_val": stats["n_images"]["val"],
            "n_test": stats["n_images"]["test"],
            "mean_ink_mass_train": stats["mean_ink_mass"]["train"],
            "share_zero_pixels": stats["pixels_train"]["share_zero"],
            "pca_variance_2d": float(sum(stats["pca_explained_variance_ratio"][:2])),
            "duplicate_copies_train": clean_report["duplicates"]["train"]["extra_copies"],
            "duplicate_copies_test": clean_report["duplicates"]["test"]["extra_copies"],
            "leakage_pairs": clean_report["leakage"]["pairs"],
            "flagged_train_images": clean_report["flags"]["flagged_train_images"],
            "clean_policy": clean_report["policy"],
            "normalization": prepared["normalization"]["method"],
            "normalization_stats": prepared["normalization"],
            "seed": int(self.seed),
            "figures": [{"file": f, "title": t, "caption": c} for f, t, c in FIGURES],
            "tables": [{"file": f, "title": t} for f, t in TABLES],
        }

        self.progress(0.5, "drawing figures")
        with store.staged_dir(self.output_dir()) as tmp:
            store.write_pickle(tmp / "class_distribution.pkl", result["distribution"])
            store.write_pickle(tmp / "feature_summary.pkl", result["feature_summary"])
            store.write_pickle(tmp / "mean_similarity.pkl", result["similarity"])
            store.write_pickle(tmp / "pixel_histogram.pkl", result["histogram"])
            store.write_pickle(tmp / "features.pkl", result["features"])
            store.write_pickle(tmp / "class_images.pkl", {"mean": result["mean"], "std": result["std"]})
            store.write_pickle(tmp / "pca.pkl", result["pca"])
            explore_plots.plot_class_distribution(result["distribution"], tmp / "class_distribution.png")
            explore_plots.plot_class_images(result["mean"], result["std"], tmp / "class_images.png")
            explore_plots.plot_pixel_histogram(result["histogram"], tmp / "pixel_histogram.png")
            train_features = result["features"][result["features"]["split"] == "train"]
            explore_plots.plot_features_by_class(train_features, labels["train"], tmp / "features_by_class.png")
            explore_plots.plot_pca(result["pca"], tmp / "pca_2d.png")
            explore_plots.plot_similarity(result["similarity"], tmp / "mean_similarity.png")
            store.write_json(tmp / self.primary, summary)
        self.progress(1.0, "exploration written")
