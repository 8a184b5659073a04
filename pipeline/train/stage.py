"""The training stage: train the engine's CNN on the prepared splits, resumably, and
describe the run as one :class:`~pipeline.result.StageResult`.

This is where the application meets the engine: it hands :func:`pipeline.nn.train`
the augmentation (:mod:`pipeline.data.augment`), the on-disk checkpoint store
(:mod:`pipeline.train.checkpoints`) and the progress callback. The trained model
becomes the ``model`` artifact (``model.pkl``: the plain dict of
:func:`pipeline.nn.model_state`; rebuild it with :func:`pipeline.nn.model_from_state`).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from pipeline.nn import TrainConfig, model_state, preset_spec, train
from pipeline.nn.train import Augment, TrainResult
from pipeline.progress import ProgressFn, ignore
from pipeline.result import Figure, StageResult, Table

SELECTION = "parameters of the epoch with the best validation accuracy (ties: lower validation loss)"
SELECTION_EMA = ("moving average of the weights (decay {decay}) at the epoch where it had the best validation "
                 "accuracy (ties: lower validation loss)")


def make_augment(config: TrainConfig) -> Augment | None:
    """The augmentation ``config`` asks for, as ``augment(x_batch, rng)``; None when it is off."""
    if not config.augment:
        return None
    from pipeline.data.augment import augment_batch

    def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return augment_batch(x, rng, config.max_shift, config.max_degrees, max_scale=config.max_scale,
                             elastic_alpha=config.elastic_alpha, elastic_sigma=config.elastic_sigma)

    return augment


def training_summary(preset: str, spec: list[dict], config: TrainConfig, result: TrainResult,
                     n_train: int, n_val: int) -> dict[str, Any]:
    """The facts of one training run (JSON-able): settings, outcome, and the per-epoch history."""
    optimizer = {"name": config.optimizer, "learning_rate": config.learning_rate,
                 "weight_decay": config.weight_decay, "schedule": config.schedule}
    if config.optimizer == "sgd":
        optimizer.update(momentum=config.momentum, nesterov=True)
    if config.schedule == "onecycle":
        optimizer.update(warmup_epochs=config.warmup_epochs, per_step=True)
    return {
        "preset": preset,
        "spec": spec,
        "num_params": result.model.num_params(),
        "epochs": config.epochs,
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "best_val_accuracy": result.best_val_acc,
        "best_val_loss": result.best_val_loss,
        "stopped_early": result.stopped_early,
        "train_seconds": result.train_seconds,
        "images_per_second": result.images_per_second,
        "params_sha256": result.params_sha256,
        "resumed_from_epoch": result.resumed_from_epoch,
        "seed": config.seed,
        "batch_size": config.batch_size,
        "optimizer": optimizer,
        "augment": ({"max_shift_px": config.max_shift, "max_rotation_deg": config.max_degrees,
                     **({"max_scale": config.max_scale} if config.max_scale else {}),  # as before when off
                     **({"elastic_alpha": config.elastic_alpha, "elastic_sigma_px": config.elastic_sigma}
                        if config.elastic_alpha else {})}
                    if config.augment else False),
        "patience": config.patience,
        "ema_decay": config.ema_decay,
        "label_smoothing": config.label_smoothing,
        "n_train": int(n_train),
        "n_val": int(n_val),
        "selection": SELECTION_EMA.format(decay=config.ema_decay) if config.ema_decay else SELECTION,
        "history": result.history,
    }


def history_table(history: list[dict[str, Any]]) -> Table:
    """The per-epoch history (one row per epoch) as a report table."""
    import pandas as pd

    frame = pd.DataFrame(history).set_index("epoch")
    return Table(name="history", title="Per-epoch training history", frame=frame)


def run_training(spec: list[dict], x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                 y_val: np.ndarray, config: TrainConfig, checkpoint_dir: str | os.PathLike | None = None,
                 progress: ProgressFn = ignore) -> TrainResult:
    """:func:`pipeline.nn.train` with the augmentation ``config`` asks for and, given a
    ``checkpoint_dir``, on-disk checkpoints of this run (resumed from when present).

    x_* float32 (N, 1, 28, 28); y_* int64 (N,).
    """
    from pipeline.train.checkpoints import run_checkpoints

    checkpoints = (run_checkpoints(checkpoint_dir, spec, config, x_train, y_train, x_val, y_val)
                   if checkpoint_dir is not None else None)
    return train(spec, x_train, y_train, x_val, y_val, config, augment=make_augment(config),
                 checkpoints=checkpoints, progress=progress)


def train_stage(data: dict[str, np.ndarray], preset: str, config: TrainConfig,
                checkpoint_dir: str | os.PathLike | None = None, progress: ProgressFn = ignore) -> StageResult:
    """Train the ``preset`` model on ``data`` (x_train/y_train/x_val/y_val: float32 (N, 1, 28, 28)
    and int64 (N,)) with ``config``; checkpoints go to ``checkpoint_dir`` (None: no checkpoints)
    and a run killed midway resumes from them, bit-identically.
    """
    from pipeline.train.figures import learning_curves, learning_curves_caption

    spec = preset_spec(preset)
    result = run_training(spec, data["x_train"], data["y_train"], data["x_val"], data["y_val"], config,
                          checkpoint_dir, progress)
    summary = training_summary(preset, spec, config, result, len(data["y_train"]), len(data["y_val"]))
    headline = [
        ("Best epoch", result.best_epoch),
        ("Best validation accuracy", f"{100 * result.best_val_acc:.2f}%"),
        ("Epochs run", len(result.history)),
        ("Training seconds", round(result.train_seconds, 1)),
        ("Images per second", round(result.images_per_second)),
        ("Parameters sha256", result.params_sha256[:12]),
    ]
    curves = Figure(name="learning_curves", title="Learning curves", figure=learning_curves(result.history),
                    caption=learning_curves_caption(result.history, result.best_epoch, result.stopped_early,
                                                    config.ema_decay, config.label_smoothing))
    return StageResult(title="Training", summary=summary, headline=headline,
                       tables=[history_table(result.history)], figures=[curves],
                       texts={"model": result.model.summary() + "\n"},
                       artifacts={"model": model_state(result.model)})
