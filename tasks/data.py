"""CleanData: audit the raw MNIST files and apply the cleaning policy."""
from __future__ import annotations

import luigi

from tasks.base import PipelineTask
from tasks.acquire import FetchMNIST

TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


class CleanData(PipelineTask):
    """Write ``data_dir/interim/clean-<policy>-<hash>/``: cleaned.pkl, clean_report.json, tables, a figure.

    ``cleaned.pkl`` is a plain dict: train_images uint8 (N, 28, 28), train_labels int64 (N,),
    test_images uint8 (10000, 28, 28), test_labels int64, train_source_index /
    test_source_index int64 (rows of the original files), policy str, flags DataFrame.
    The test split is never altered, whatever the policy.
    """

    stage = "interim"
    primary = "cleaned.pkl"

    clean_policy = luigi.ChoiceParameter(
        choices=["keep", "flag", "drop"],
        default="flag",
        description="keep: audit only; flag (default): keep all, carry per-image flags; "
        "drop: remove flagged training images (test is never altered)",
    )

    def slug_prefix(self) -> str:
        return f"clean-{self.clean_policy}-"

    def requires(self):
        return FetchMNIST()

    def run(self):
        import numpy as np

        from pipeline import clean, idx, store
        from pipeline.explore.figures import plot_examples

        raw = self.input_dir()
        self.progress(0.0, "reading IDX files")
        train_images, train_labels = idx.read_pair(raw / TRAIN_FILES[0], raw / TRAIN_FILES[1])
        test_images, test_labels = idx.read_pair(raw / TEST_FILES[0], raw / TEST_FILES[1])
        self.progress(0.2, "auditing duplicates, leakage and outliers")
        result = clean.clean(train_images, train_labels, test_images, test_labels, policy=self.clean_policy)

        report = dict(result.report)
        tables = [
            ("counts.pkl", "Image counts before and after cleaning", "counts"),
            ("label_audit.pkl", "Label type and range per split", "label_audit"),
            ("flag_summary.pkl", "Flagged images per split, reason and digit", "flag_summary"),
        ]
        report["tables"] = [{"file": f, "title": t} for f, t, _ in tables]
        report["figures"] = [{
            "file": "flagged_examples.png",
            "title": "Flagged images",
            "caption": "Leakage and duplicates first, then the images with the most extreme within-class "
                       f"z-score of ink mass or bounding-box area (|z| > {report['settings']['z_threshold']:g}). "
                       f"Policy '{result.policy}': {report['policy_note']}",
        }]
        # Scalar headline numbers at the top level: the report shows these as a table.
        report.update({
            "train_before": report["counts"]["before"]["train"],
            "train_after": report["counts"]["after"]["train"],
            "test_images": report["counts"]["after"]["test"],
            "duplicate_copies_train": report["duplicates"]["train"]["extra_copies"],
            "duplicate_copies_test": report["duplicates"]["test"]["extra_copies"],
            "leakage_pairs": report["leakage"]["pairs"],
            "flagged_train_images": report["flags"]["flagged_train_images"],
            "flagged_test_images": report["flags"]["flagged_test_images"],
        })

        with store.staged_dir(self.output_dir()) as tmp:
            for name, frame in result.tables.items():
                store.write_pickle(tmp / f"{name}.pkl", frame)
            ex = result.examples
            plot_examples(ex["images"], ex["captions"], "Flagged images (split #index (label), reason)",
                          tmp / "flagged_examples.png")
            store.write_json(tmp / "clean_report.json", report)
            store.write_pickle(tmp / self.primary, {
                "train_images": result.train_images,
                "train_labels": result.train_labels.astype(np.int64),
                "test_images": result.test_images,
                "test_labels": result.test_labels.astype(np.int64),
                "train_source_index": result.train_source_index,
                "test_source_index": result.test_source_index,
                "policy": result.policy,
                "flags": result.flags,
            })
        self.progress(1.0, f"{report['train_after']} training images kept ({result.policy})")
