"""EvaluateCNN: score the trained model on the test split, once, with figures for the report."""
from __future__ import annotations

import logging

from luigi.util import inherits

from tasks.base import PipelineTask
from tasks.data import PrepareData
from tasks.train import TrainCNN

log = logging.getLogger("luigi-interface")

N_MISTAKES = 24


@inherits(TrainCNN)
class EvaluateCNN(PipelineTask):
    """Write ``data_dir/eval/<slug>/``: evaluation.json (written last), PNG figures,
    pickled DataFrames (per_class.pkl, reliability.pkl, confused_pairs.pkl,
    confident_mistakes.pkl), predictions.pkl {"probabilities" (N, 10) float32,
    "labels", "predicted", "source_index"} and pickles of the mistake images,
    the first-layer filters and the feature maps of one test image.
    """

    stage = "eval"
    primary = "evaluation.json"

    slug_prefix = TrainCNN.slug_prefix  # named like the model it scores

    def requires(self):
        return {"model": self.clone(TrainCNN), "data": self.clone(PrepareData)}

    def run(self):
        import numpy as np
        import pandas as pd

        from pipeline import evaluate, evaluate_plots as plots, store
        from pipeline.nn.model import load_model

        self.progress(0.0, "loading the model and the test split")
        model = load_model(self.input()["model"].path)
        data = store.read_pickle(self.input()["data"].path)
        x_test, y_test = data["x_test"], data["y_test"]
        source = data.get("test_source_index", np.arange(len(y_test)))
        probs = model.predict_proba(x_test)  # (N, 10) float32
        self.progress(0.4, f"scoring {len(y_test)} test images")
        s = evaluate.summarize(probs, y_test, n_mistakes=N_MISTAKES)
        for m in s["confident_mistakes"]:
            m["source_index"] = int(source[m["index"]])
        rows = [m["index"] for m in s["confident_mistakes"]]
        mistake_images = x_test[rows, 0] if rows else np.zeros((0,) + x_test.shape[2:], x_test.dtype)

        sample = 0  # the first test image, as in the book's feature-map figure
        conv_index = model.first_conv_index()
        maps = model.feature_maps(x_test[sample:sample + 1], conv_index)[0]  # (F, OH, OW)
        filters = model.first_conv_weights()  # (F, C, kh, kw)

        figures = [
            ("confusion.png", "Confusion matrix",
             "Rows are true digits, columns predicted ones; errors are coloured on a log scale."),
            ("per_class.png", "Per-class precision, recall and F1", "Scores per digit on the test split."),
            ("reliability.png", "Calibration",
             f"Accuracy against confidence in 15 bins; expected calibration error {s['ece']:.4f}."),
            ("mistakes.png", "Most confident mistakes",
             "Test images the model got wrong with the highest confidence: true→predicted (confidence), source index."),
            ("filters.png", "First-layer filters", f"The {filters.shape[0]} learned {filters.shape[2]}×{filters.shape[3]} "
             "filters of the first convolution (dark = positive weight)."),
            ("feature_maps.png", "Feature maps",
             f"Output of the first convolution for test image #{int(source[sample])} (label {int(y_test[sample])})."),
        ]
        tables = [("per_class.pkl", "Per-class precision, recall and F1"),
                  ("confused_pairs.pkl", "Most confused pairs"),
                  ("confident_mistakes.pkl", "Most confident mistakes"),
                  ("reliability.pkl", "Reliability bins")]
        self.progress(0.6, "drawing figures")
        with store.staged_dir(self.output_dir()) as tmp:
            plots.confusion_figure(np.array(s["confusion"]), tmp / "confusion.png")
            plots.per_class_figure(s["per_class_table"], tmp / "per_class.png")
            plots.reliability_figure(s["reliability"], s["ece"], tmp / "reliability.png")
            plots.mistakes_figure(mistake_images, s["confident_mistakes"], tmp / "mistakes.png")
            plots.filters_figure(filters, tmp / "filters.png")
            plots.feature_maps_figure(x_test[sample, 0], maps, tmp / "feature_maps.png",
                                      f"First convolution, {maps.shape[0]} maps of {maps.shape[1]}×{maps.shape[2]}")
            store.write_pickle(tmp / "per_class.pkl", s["per_class_table"])
            store.write_pickle(tmp / "reliability.pkl", s["reliability"])
            store.write_pickle(tmp / "confused_pairs.pkl",
                               pd.DataFrame(s["most_confused_pairs"], columns=["true", "predicted", "count"]))
            store.write_pickle(tmp / "confident_mistakes.pkl", pd.DataFrame(
                s["confident_mistakes"],
                columns=["index", "source_index", "true", "predicted", "confidence", "p_true"]))
            store.write_pickle(tmp / "predictions.pkl", {
                "probabilities": probs, "labels": y_test, "predicted": probs.argmax(axis=1),
                "source_index": source})
            store.write_pickle(tmp / "mistake_images.pkl", {
                "images": mistake_images, "index": np.array(rows, dtype=np.int64),
                "source_index": np.array([m["source_index"] for m in s["confident_mistakes"]], dtype=np.int64)})
            store.write_pickle(tmp / "filters.pkl", {"weights": filters, "layer_index": conv_index})
            store.write_pickle(tmp / "feature_maps.pkl", {"image": x_test[sample, 0], "maps": maps,
                                                          "test_index": sample, "layer_index": conv_index})
            summary = {key: value for key, value in s.items() if key not in ("per_class_table", "reliability")}
            summary.update({
                "model_params_sha256": store.sha256_arrays(model.parameters()),
                "figures": [{"file": f, "title": t, "caption": c} for f, t, c in figures],
                "tables": [{"file": f, "title": t} for f, t in tables],
                "note": "the test split is scored once here; epochs and settings were chosen on validation only",
            })
            store.write_json(tmp / self.primary, summary)
        self.progress(1.0, f"test accuracy {100 * s['test_accuracy']:.2f}%")
        log.info("EvaluateCNN: test accuracy %.4f (95%% CI %.4f-%.4f), ECE %.4f",
                 s["test_accuracy"], s["ci95"][0], s["ci95"][1], s["ece"])
