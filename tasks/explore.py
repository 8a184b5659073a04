"""ExploreData: statistics, tables and figures of the prepared splits (pipeline/explore/)."""
from __future__ import annotations

import luigi
from luigi.util import inherits

from pipeline.result import RESULT_FILE
from tasks.base import PipelineTask
from tasks.data import CleanData, PrepareData


@inherits(PrepareData)
class ExploreData(PipelineTask):
    """Write ``data_dir/explore/explore-<hash>/``: result.json, PNG figures, pickled tables and artifacts.

    Reads the prepared splits (labels and source indices) and the cleaned uint8
    images, so features and histograms are on raw pixel values whatever the
    normalisation. Tables: class_distribution, feature_summary, mean_similarity;
    artifacts: pixel_histogram (256 rows), features (one row per image),
    class_images {"mean", "std"} (10, 28, 28), pca (projection, labels, components).
    """

    stage = "explore"
    primary = RESULT_FILE

    pca_sample = luigi.IntParameter(default=3000, description="training images drawn (seeded) for the PCA plot")

    def slug_prefix(self) -> str:
        return "explore-"

    def requires(self):
        return {"prepared": self.clone(PrepareData), "cleaned": self.clone(CleanData)}

    def run(self):
        import numpy as np

        from pipeline.explore.stage import explore_stage

        clean_summary = self.load_input("cleaned", RESULT_FILE)["summary"]
        rng = np.random.default_rng(self.seed)  # the one Generator of this task: draws the PCA sample
        result = explore_stage(self.load_input("prepared"), self.load_input("cleaned"), clean_summary, rng,
                               self.pca_sample, progress=self.progress)
        self.write_result(result)
