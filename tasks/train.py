"""TrainCNN: train the NumPy CNN on the prepared split, resumably."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import luigi
from luigi.util import requires

from tasks.base import PipelineTask
from tasks.config import data_path
from tasks.data import PrepareData

log = logging.getLogger("luigi-interface")


@requires(PrepareData)
class TrainCNN(PipelineTask):
    """Write ``data_dir/models/<preset>-e<epochs>-s<seed>-<hash>/``: model.pkl, history.json, train.json, summary.txt.

    model.pkl is a plain pickle (spec, input_shape, params, buffers) holding the
    parameters of the epoch that was best on the *validation* split. A checkpoint
    is written atomically after every epoch under ``<slug>.checkpoints/`` beside the
    output; a killed run resumes from it with bit-identical results. The checkpoints
    are deleted once the output is in place (the output holds everything they would give).
    """

    stage = "models"
    primary = "model.pkl"

    preset = luigi.Parameter(default="twoconv", description="model architecture: a name from pipeline.nn.model.PRESETS")
    epochs = luigi.IntParameter(default=12, description="maximum number of epochs")
    batch_size = luigi.IntParameter(default=100)
    learning_rate = luigi.FloatParameter(default=2e-3, description="initial learning rate")
    optimizer = luigi.ChoiceParameter(choices=["adam", "sgd"], default="adam",
                                      description="adam, or sgd with Nesterov momentum 0.9")
    weight_decay = luigi.FloatParameter(default=0.0, description="L2 penalty added to the gradients")
    schedule = luigi.ChoiceParameter(choices=["constant", "step", "cosine"], default="cosine",
                                     description="learning rate per epoch")
    augment = luigi.BoolParameter(default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
                                  description="random shifts (±2 px) and rotations (±10°) of training images; "
                                              "--augment false to turn off")
    patience = luigi.IntParameter(default=0, description="stop after this many epochs without a better validation "
                                                         "score; 0 = run all epochs")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Fail when the task is built, before hours of upstream work.
        from pipeline.nn.model import preset_spec

        preset_spec(self.preset)
        self.train_config().validate()

    def slug_prefix(self) -> str:
        return f"{self.preset}-e{self.epochs}-s{self.seed}-"

    def checkpoint_dir(self) -> Path:
        """Outside the staged output directory, so checkpoints survive a crash of the run."""
        return data_path(self.stage, f"{self.slug()}.checkpoints")

    def train_config(self):
        from pipeline.nn.train import TrainConfig

        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                           optimizer=self.optimizer, weight_decay=self.weight_decay, schedule=self.schedule,
                           augment=self.augment, patience=self.patience, seed=self.seed)

    def run(self):
        from pipeline import store
        from pipeline.nn.model import preset_spec, save_model
        from pipeline.nn.train import terminal_progress, train

        data = store.read_pickle(self.input().path)
        config = self.train_config()
        spec = preset_spec(self.preset)
        terminal = terminal_progress()

        def progress(fraction: float, message: str) -> None:
            self.progress(fraction, message)
            terminal(fraction, message)

        result = train(spec, data["x_train"], data["y_train"], data["x_val"], data["y_val"], config,
                       checkpoint_dir=self.checkpoint_dir(), progress=progress)
        info = {
            "preset": self.preset,
            "spec": spec,
            "num_params": result.model.num_params(),
            "epochs": self.epochs,
            "epochs_run": len(result.history),
            "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_acc,
            "best_val_loss": result.best_val_loss,
            "stopped_early": result.stopped_early,
            "train_seconds": result.train_seconds,
            "images_per_second": result.images_per_second,
            "params_sha256": result.params_sha256,
            "resumed_from_epoch": result.resumed_from_epoch,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "optimizer": {"name": self.optimizer, "learning_rate": self.learning_rate,
                          "weight_decay": self.weight_decay, "schedule": self.schedule,
                          **({"momentum": config.momentum, "nesterov": True} if self.optimizer == "sgd" else {})},
            "augment": ({"max_shift_px": config.max_shift, "max_rotation_deg": config.max_degrees}
                        if self.augment else False),
            "patience": self.patience,
            "n_train": int(len(data["y_train"])),
            "n_val": int(len(data["y_val"])),
            "selection": "parameters of the epoch with the best validation accuracy (ties: lower validation loss)",
        }
        with store.staged_dir(self.output_dir()) as tmp:
            store.write_json(tmp / "history.json", result.history)
            store.write_json(tmp / "train.json", info)
            store.write_bytes(tmp / "summary.txt", (result.model.summary() + "\n").encode())
            save_model(tmp / self.primary, result.model)
        shutil.rmtree(self.checkpoint_dir(), ignore_errors=True)
        log.info("TrainCNN: best epoch %d, validation accuracy %.4f, %.1f s, params_sha256 %s",
                 result.best_epoch, result.best_val_acc, result.train_seconds, result.params_sha256[:16])
