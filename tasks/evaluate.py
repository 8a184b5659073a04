"""EvaluateCNN: score the trained model on the test split, once (pipeline.evaluate)."""
from __future__ import annotations

import logging

from luigi.util import inherits

from tasks.base import PipelineTask
from tasks.data import PrepareData
from tasks.train import TrainCNN

log = logging.getLogger("luigi-interface")


@inherits(TrainCNN)
class EvaluateCNN(PipelineTask):
    """Write ``data_dir/eval/<slug>/``: result.json (the metrics, as ``summary``), PNG figures,
    pickled DataFrames (per_class.pkl, confused_pairs.pkl, confident_mistakes.pkl,
    reliability.pkl), predictions.pkl {"probabilities" (N, 10) float32, "labels",
    "predicted", "source_index"} and pickles of the mistake images (mistake_images.pkl),
    the first-layer filters (filters.pkl) and the feature maps of one test image
    (feature_maps.pkl). See :func:`pipeline.evaluate.stage.evaluate_stage`.
    """

    stage = "eval"
    primary = "result.json"

    slug_prefix = TrainCNN.slug_prefix  # named like the model it scores

    def requires(self):
        return {"model": self.clone(TrainCNN), "data": self.clone(PrepareData)}

    def run(self):
        from pipeline.evaluate.stage import evaluate_stage
        from pipeline.nn import model_from_state

        model = model_from_state(self.load_input("model"))
        data = self.load_input("data")
        result = evaluate_stage(model, data["x_test"], data["y_test"], data["test_source_index"],
                                progress=self.progress)
        self.write_result(result)
        s = result.summary
        log.info("EvaluateCNN: test accuracy %.4f (95%% CI %.4f-%.4f), ECE %.4f",
                 s["test_accuracy"], s["ci95"][0], s["ci95"][1], s["ece"])
