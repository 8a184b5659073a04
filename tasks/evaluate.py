"""EvaluateCNN: score the trained model, or an ensemble of them, on the test split, once (pipeline.evaluate)."""
from __future__ import annotations

import logging
from pathlib import Path

from luigi.util import inherits

from tasks.base import PipelineTask
from tasks.config import checking_settings
from tasks.cores import worker_share_of_cores
from tasks.data import PrepareData
from tasks.train import NeutralDefaults, NeutralIntParameter, TrainCNN, model_name

log = logging.getLogger("luigi-interface")


@inherits(TrainCNN)
class EvaluateCNN(NeutralDefaults, PipelineTask):
    """Write ``data_dir/eval/<slug>/``: result.json (the metrics, as ``summary``), PNG figures,
    pickled DataFrames (per_class.pkl, confused_pairs.pkl, confident_mistakes.pkl,
    reliability.pkl), predictions.pkl {"probabilities" (N, 10) float32, "labels",
    "predicted", "source_index"} and pickles of the mistake images (mistake_images.pkl),
    the first-layer filters (filters.pkl) and the feature maps of one test image
    (feature_maps.pkl). See :func:`pipeline.evaluate.stage.evaluate_stage`.

    With ``--ensemble K`` (K > 1) it requires K TrainCNN members (seeds seed … seed+K-1, all on
    the split of seed: Luigi runs them in parallel with ``--workers``, or on several machines
    through luigid) and scores the mean of their probabilities; predictions.pkl holds the
    ensemble's, member_predictions.pkl every member's, and a members table (members.pkl)
    leads the result. See :func:`pipeline.evaluate.ensemble.ensemble_stage`.

    With ``--tta k`` (k > 0) each model is scored with test-time augmentation (the mean of its
    probabilities over the image and its shifts by 1 … k pixels, :mod:`pipeline.evaluate.tta`);
    the result's ``tta`` record has the validation accuracy with and without it, to choose by.
    """

    stage = "eval"
    primary = "result.json"

    member = None  # not inherited from TrainCNN: an evaluation scores members 0 … ensemble-1
    ensemble = NeutralIntParameter(default=1, description="number of models averaged: K members, TrainCNN tasks "
                                   "with seeds seed … seed+K-1 on the split of seed; 1 = the single model")
    tta = NeutralIntParameter(default=0, description="test-time augmentation: average each model's probabilities "
                              "over the image and its shifts by 1 … tta pixels up, down, left and right (1 + 4·tta "
                              "views, tta <= 3); the result has the validation accuracy with and without; 0 = off")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from pipeline.evaluate.tta import views

        with checking_settings(self):
            if self.ensemble < 1:
                raise ValueError(f"ensemble must be >= 1 (1 is the single model), got {self.ensemble}")
            views(self.tta)  # fails here, when the task is built, on a level out of range

    def slug_prefix(self) -> str:
        return model_name(self, ensemble=self.ensemble) + "-"  # named like the model it scores

    def requires(self):
        return {"models": [self.clone(TrainCNN, member=m) for m in range(self.ensemble)],
                "data": self.clone(PrepareData)}

    def run(self):
        from pipeline import store
        from pipeline.evaluate.ensemble import Member, ensemble_stage
        from pipeline.result import RESULT_FILE

        members = [Member(model_state=store.read_verified(Path(t.path)),
                          training=store.read_verified(Path(t.path).parent / RESULT_FILE)["summary"])
                   for t in self.input()["models"]]
        with worker_share_of_cores("EvaluateCNN"):
            result = ensemble_stage(members, self.load_input("data"), progress=self.progress, tta=self.tta)
            self.write_result(result)  # inside: the manifest records the BLAS threads it ran on
        s = result.summary
        log.info("EvaluateCNN: test accuracy %.4f (95%% CI %.4f-%.4f), ECE %.4f%s%s",
                 s["test_accuracy"], s["ci95"][0], s["ci95"][1], s["ece"],
                 f", ensemble of {self.ensemble}" if self.ensemble > 1 else "",
                 f", TTA {self.tta} (validation {s['tta']['val_accuracy']:.4f}, "
                 f"{s['tta']['val_accuracy_without']:.4f} without)" if self.tta else "")
