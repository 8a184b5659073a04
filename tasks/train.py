"""TrainCNN: train the NumPy CNN on the prepared split, resumably (pipeline.train)."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import luigi
from luigi.util import requires

from pipeline.nn.optim import OPTIMIZERS, SCHEDULES
from tasks.base import PipelineTask
from tasks.config import data_path, run_name
from tasks.data import PrepareData

log = logging.getLogger("luigi-interface")


@requires(PrepareData)
class TrainCNN(PipelineTask):
    """Write ``data_dir/models/<preset>-e<epochs>-s<seed>[-n<limit>]-<hash>/``: model.pkl, the
    training record (result.json: settings, outcome, per-epoch history), history.pkl,
    learning_curves.png and model.txt (the layer-by-layer summary).

    model.pkl is a plain pickle (format, spec, input_shape, params, buffers) holding the
    parameters of the epoch that was best on the *validation* split. A checkpoint
    is written atomically after every epoch under ``<slug>.checkpoints/`` beside the
    output; a killed run resumes from it with bit-identical results. The checkpoints
    are deleted once the output is in place (the output holds everything they would give).
    """

    stage = "models"
    primary = "model.pkl"

    preset = luigi.Parameter(default="twoconv", description="model architecture: a name from pipeline.nn.PRESETS")
    epochs = luigi.IntParameter(default=12, description="maximum number of epochs")
    batch_size = luigi.IntParameter(default=100, description="training images per mini-batch")
    learning_rate = luigi.FloatParameter(default=2e-3, description="initial learning rate")
    optimizer = luigi.ChoiceParameter(choices=OPTIMIZERS, default="adam",
                                      description="adam, or sgd with Nesterov momentum 0.9")
    weight_decay = luigi.FloatParameter(default=0.0, description="L2 penalty added to the gradients")
    schedule = luigi.ChoiceParameter(choices=SCHEDULES, default="cosine",
                                     description="learning rate per epoch. On the command line write "
                                                 "--RunPipeline-schedule (or --TrainCNN-schedule): Luigi takes a "
                                                 "bare --schedule for an abbreviation of its --scheduler-* flags")
    augment = luigi.BoolParameter(default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
                                  description="random shifts (±2 px) and rotations (±10°) of training images; "
                                              "--augment false to turn off")
    patience = luigi.IntParameter(default=0, description="stop after this many epochs without a better validation "
                                                         "score; 0 = run all epochs")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Fail when the task is built, before hours of upstream work.
        from pipeline.nn import preset_spec

        preset_spec(self.preset)
        self.train_config().validate()

    def slug_prefix(self) -> str:
        return run_name(self.preset, self.epochs, self.seed, self.train_limit) + "-"

    def checkpoint_dir(self) -> Path:
        """Outside the staged output directory, so checkpoints survive a crash of the run."""
        return data_path(self.stage, f"{self.slug()}.checkpoints")

    def train_config(self):
        from pipeline.nn import TrainConfig

        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                           optimizer=self.optimizer, weight_decay=self.weight_decay, schedule=self.schedule,
                           augment=self.augment, patience=self.patience, seed=self.seed)

    def run(self):
        from pipeline.train.stage import train_stage

        data = self.load_input()
        result = train_stage(data, self.preset, self.train_config(), self.checkpoint_dir(), progress=self.progress)
        self.write_result(result)
        shutil.rmtree(self.checkpoint_dir(), ignore_errors=True)
        s = result.summary
        log.info("TrainCNN: best epoch %d, validation accuracy %.4f, %.1f s, params_sha256 %s",
                 s["best_epoch"], s["best_val_accuracy"], s["train_seconds"], s["params_sha256"][:16])
