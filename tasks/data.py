"""CleanData and PrepareData: the data stages (pipeline/data/)."""
from __future__ import annotations

import luigi
from luigi.util import requires

from pipeline.data.normalize import DEFAULT_METHOD, METHODS
from pipeline.data.policy import DEFAULT_POLICY, POLICIES
from tasks.acquire import FetchMNIST
from tasks.base import PipelineTask
from tasks.config import checking_settings


class CleanData(PipelineTask):
    """Write ``data_dir/interim/clean-<policy>-<hash>/``: cleaned.pkl, result.json (the audit report),
    the findings (duplicates.pkl, leakage.pkl, flags.pkl), three tables and the flagged-images figure.

    ``cleaned.pkl`` is a plain dict: train_images uint8 (N, 28, 28), train_labels int64 (N,),
    test_images uint8 (10000, 28, 28), test_labels int64, train_source_index /
    test_source_index int64 (rows of the original files), policy str, flags DataFrame.
    The test split is never altered, whatever the policy.
    """

    stage = "interim"
    primary = "cleaned.pkl"

    clean_policy = luigi.ChoiceParameter(
        choices=POLICIES,
        default=DEFAULT_POLICY,
        description="keep: audit only; flag (default): keep all, carry per-image flags; "
        "drop: remove flagged training images (test is never altered)",
    )

    def slug_prefix(self) -> str:
        return f"clean-{self.clean_policy}-"

    def requires(self):
        return FetchMNIST()

    def run(self):
        from pipeline.data.clean_stage import clean_stage

        self.write_result(clean_stage(self.input_dir(), self.clean_policy, progress=self.progress))


@requires(CleanData)
class PrepareData(PipelineTask):
    """Write ``data_dir/processed/prep-<normalization>-s<seed>-<hash>/``: data.pkl and result.json.

    ``data.pkl`` is a plain dict: x_train / x_val / x_test float32 (N, 1, 28, 28),
    y_* int64 (N,), *_source_index int64 (rows of the original IDX files),
    normalization {"method", "mean", "std", "min", "max"} fitted on x_train only,
    class_counts {"train": [10], "val": [10], "test": [10]}, seed int.
    result.json's summary holds the split sizes, the fitted statistics, the
    proportion check and the value range of each split.
    """

    stage = "processed"
    primary = "data.pkl"

    seed = luigi.IntParameter(default=42, description="seeds the validation split")
    train_limit = luigi.IntParameter(
        default=0, description="use only the first N (cleaned) training images, before the split; 0 = all")
    val_fraction = luigi.FloatParameter(default=0.1, description="share of each class held out, 0 < f < 0.5")
    normalization = luigi.ChoiceParameter(
        choices=METHODS, default=DEFAULT_METHOD,
        description="minmax: [0, 1] from the training min/max; standardize: then (x - mean) / std of training pixels")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Fail when the task is built, before any upstream work runs.
        from pipeline.data.split import check_val_fraction

        with checking_settings(self):
            check_val_fraction(self.val_fraction)
            if self.train_limit < 0:
                raise ValueError(f"train_limit must be >= 0 (0 means all images), got {self.train_limit}")

    def slug_prefix(self) -> str:
        return f"prep-{self.normalization}-s{self.seed}-"

    def run(self):
        from pipeline.data.prepare import prepare_stage

        result = prepare_stage(self.load_input(), self.seed, self.val_fraction, self.normalization,
                               self.train_limit, progress=self.progress)
        self.write_result(result)
