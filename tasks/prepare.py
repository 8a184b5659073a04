"""PrepareData: normalise the cleaned images and split off a stratified validation set."""
from __future__ import annotations

import luigi
from luigi.util import requires

from tasks.base import PipelineTask
from tasks.data import CleanData


@requires(CleanData)
class PrepareData(PipelineTask):
    """Write ``data_dir/processed/prep-<hash>/data.pkl`` and ``meta.json``.

    ``data.pkl`` is a plain dict: x_train / x_val / x_test float32 (N, 1, 28, 28),
    y_* int64 (N,), *_source_index int64 (rows of the original IDX files),
    normalization {"method", "mean", "std", "min", "max"} fitted on x_train only,
    class_counts {"train": [10], "val": [10], "test": [10]}, seed int.
    """

    stage = "processed"
    primary = "data.pkl"

    seed = luigi.IntParameter(default=42, description="seeds the validation split")
    train_limit = luigi.IntParameter(
        default=0, description="use only the first N (cleaned) training images, before the split; 0 = all")
    val_fraction = luigi.FloatParameter(default=0.1, description="share of each class held out, 0 < f < 0.5")
    normalization = luigi.ChoiceParameter(
        choices=["minmax", "standardize"], default="minmax",
        description="minmax: [0, 1] from the training min/max; standardize: then (x - mean) / std of training pixels")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Fail when the task is built, before any upstream work runs.
        from pipeline.data.split import check_val_fraction

        check_val_fraction(self.val_fraction)
        if self.train_limit < 0:
            raise ValueError(f"train_limit must be >= 0 (0 means all images), got {self.train_limit}")

    def slug_prefix(self) -> str:
        return f"prep-{self.normalization}-s{self.seed}-"

    def run(self):
        import numpy as np

        from pipeline import normalize, split, store

        cleaned = store.read_pickle(self.input().path)
        x, y = cleaned["train_images"], cleaned["train_labels"].astype(np.int64)
        src = cleaned["train_source_index"].astype(np.int64)
        if self.train_limit > 0:
            x, y, src = x[: self.train_limit], y[: self.train_limit], src[: self.train_limit]

        rng = np.random.default_rng(self.seed)  # the one Generator of this task
        tr, va = split.stratified_split(y, self.val_fraction, rng)
        proportions = split.check_proportions(y[tr], y[va])
        stats = normalize.fit_normalizer(x[tr], self.normalization)
        self.progress(0.5, f"normalising ({self.normalization})")

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
            "seed": int(self.seed),
        }
        meta = {
            "n_train": int(tr.size),
            "n_val": int(va.size),
            "n_test": int(y_test.size),
            "class_counts": counts,
            "normalization": stats,
            "normalization_note": "statistics fitted on the training split only, applied unchanged to val and test",
            "proportion_check": proportions,
            "seed": int(self.seed),
            "train_limit": int(self.train_limit),
            "val_fraction": float(self.val_fraction),
            "clean_policy": cleaned["policy"],
            "value_range": {name: [float(data[name].min()), float(data[name].max())]
                            for name in ("x_train", "x_val", "x_test")},
        }
        with store.staged_dir(self.output_dir()) as tmp:
            store.write_json(tmp / "meta.json", meta)
            store.write_pickle(tmp / self.primary, data)
        self.progress(1.0, f"{tr.size} train / {va.size} val / {y_test.size} test")
