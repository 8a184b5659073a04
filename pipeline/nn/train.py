"""The training loop: epochs of shuffled mini-batches, per-epoch validation,
best-on-validation parameters, optional early stopping, and per-epoch
checkpoints from which a killed run resumes *exactly*.

Exact resume works because everything random comes from four Generators
spawned from one seed (:func:`seed_streams`) and each one's state goes into
the checkpoint with the model, the optimizer state and the history; reloading
them and replaying the remaining epochs performs the very same floating-point
operations as an uninterrupted run, so the final parameters are bit-identical.

Recipe options, each off at its neutral value (0): ``ema_decay`` validates, selects and
returns an exponential moving average of the weights (:mod:`pipeline.nn.averaging`) instead of
the weights themselves; ``label_smoothing`` trains against smoothed targets
(:class:`~pipeline.nn.losses.SoftmaxCrossEntropy`; validation loss stays plain cross-entropy);
the ``onecycle`` schedule sets the learning rate every step, with ``warmup_epochs`` of linear
warm-up (:func:`pipeline.nn.optim.onecycle`).

The loop knows nothing of files or of how images are augmented: the caller
passes ``augment(x_batch, rng) -> x_batch`` (drawing only from the ``rng`` it is
given), a checkpoint store with ``save(epoch, state)`` and ``load_latest()``,
and ``progress(fraction, message)``, which is called freely (every batch).

Data: ``x`` float32 (N, 1, 28, 28) NCHW, ``y`` int64 (N,). Only the
validation split chooses epochs; the test split never enters this module.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any, Callable, Protocol

import numpy as np

from pipeline.nn.averaging import ExponentialMovingAverage
from pipeline.nn.digest import sha256_arrays
from pipeline.nn.losses import SoftmaxCrossEntropy, log_softmax
from pipeline.nn.model import build_model
from pipeline.nn.optim import OPTIMIZERS, PER_STEP_SCHEDULES, SCHEDULES, make_optimizer, make_schedule

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]
STREAMS = ("init", "shuffle", "augment", "dropout")


class CheckpointStore(Protocol):
    """Where :func:`train` keeps its per-epoch state (the caller decides how and where)."""

    def save(self, epoch: int, state: dict[str, Any]) -> Any:
        """Keep ``state`` (plain dicts, lists, arrays) as the checkpoint after ``epoch``."""

    def load_latest(self) -> dict[str, Any] | None:
        """The newest usable state saved for *this* run, or None to start afresh."""


def _one_of(names: tuple[str, ...], quote: bool = False) -> str:
    """("a", "b", "c") -> "a, b or c"."""
    shown = [repr(n) if quote else n for n in names]
    return ", ".join(shown[:-1]) + " or " + shown[-1]


ELASTIC_SIGMA = 4.0  # pixels: Simard et al.'s smoothing of elastic displacements on 28x28 digits


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained parameters (and a few things that do not).

    ``augment``, ``max_shift``, ``max_degrees`` and ``max_scale`` describe the augmentation the
    caller passes to :func:`train` (they enter the run's fingerprint and its record).
    """

    epochs: int = 12
    batch_size: int = 100
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # one of OPTIMIZERS (SGD uses Nesterov momentum)
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"  # one of SCHEDULES
    augment: bool = False
    max_shift: int = 2  # pixels, when augmenting
    max_degrees: float = 10.0  # degrees, when augmenting
    patience: int = 0  # epochs without a better validation score before stopping; 0 = never
    seed: int = 0
    eval_batch_size: int = 1000  # does not change results, only memory and speed
    # The recipe options (RECIPE_OPTIONS) were added later; each is off at its default, 0, and then
    # left out of the fingerprint, so a run that does not use them keeps the fingerprint it always had.
    ema_decay: float = 0.0  # validate and keep an exponential moving average of the weights; 0 = off
    label_smoothing: float = 0.0  # train against (1 - s) * one_hot + s / K; 0 = off
    warmup_epochs: float = 0.0  # linear warm-up of the "onecycle" schedule, in epochs (may be fractional)
    max_scale: float = 0.0  # when augmenting, also scale each image by a factor in 1 ± max_scale; 0 = off
    elastic_alpha: float = 0.0  # when augmenting, also distort elastically, displacements times alpha; 0 = off
    elastic_sigma: float = ELASTIC_SIGMA  # the Gaussian smoothing (pixels) of those displacements; used only with elastic_alpha

    def validate(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1 (got {self.epochs})")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1 (got {self.batch_size})")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0 (got {self.learning_rate})")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be {_one_of(OPTIMIZERS, quote=True)} (got {self.optimizer!r})")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be {_one_of(SCHEDULES)} (got {self.schedule!r})")
        if self.patience < 0 or self.weight_decay < 0:
            problems.append("patience and weight_decay must be >= 0")
        if not 0 <= self.ema_decay < 1:
            problems.append(f"ema_decay must be in [0, 1), 0 = off (got {self.ema_decay})")
        if not 0 <= self.max_scale < 0.5:
            problems.append(f"max_scale must be in [0, 0.5), 0 = off (got {self.max_scale})")
        if not 0 <= self.elastic_alpha <= 100 or not 0 < self.elastic_sigma <= 28:
            problems.append(f"elastic_alpha must be in [0, 100], 0 = off, and elastic_sigma in (0, 28] pixels "
                            f"(got {self.elastic_alpha} and {self.elastic_sigma})")
        elif self.elastic_sigma != ELASTIC_SIGMA and not self.elastic_alpha:
            problems.append(f"elastic_sigma applies to the elastic distortion only (elastic_alpha is 0; "
                            f"got elastic_sigma {self.elastic_sigma})")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing must be in [0, 1), 0 = off (got {self.label_smoothing})")
        if not 0 <= self.warmup_epochs < max(self.epochs, 1):  # epochs < 1 is reported once, above
            problems.append(f"warmup_epochs must be >= 0 and less than epochs (got {self.warmup_epochs})")
        elif self.warmup_epochs and self.schedule != "onecycle":
            problems.append(f"warmup_epochs applies to the onecycle schedule only (schedule is {self.schedule!r})")
        if problems:
            raise ValueError("bad training configuration: " + "; ".join(problems))

    def fingerprint_fields(self) -> dict[str, Any]:
        """The fields that change the result (a checkpoint is reused only if they match); a recipe
        option at its neutral value is left out, as it was before the option existed, and so is a
        setting of a recipe option that is off (RECIPE_SETTINGS)."""
        fields = dataclasses.asdict(self)
        fields.pop("eval_batch_size")
        for f in dataclasses.fields(self):
            if f.name in RECIPE_OPTIONS and fields[f.name] == f.default:
                del fields[f.name]
        for setting, option in RECIPE_SETTINGS.items():
            if option not in fields:
                del fields[setting]
        return fields


# TrainConfig fields that are off by default
RECIPE_OPTIONS = ("ema_decay", "label_smoothing", "warmup_epochs", "max_scale", "elastic_alpha")
RECIPE_SETTINGS = {"elastic_sigma": "elastic_alpha"}  # a setting -> the recipe option it tunes


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns. ``model`` holds the best-on-validation parameters."""

    model: Any
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_acc: float
    best_val_loss: float
    stopped_early: bool
    train_seconds: float
    params_sha256: str
    images_per_second: float
    resumed_from_epoch: int  # 0 when the run started from scratch


def seed_streams(seed: int) -> dict[str, np.random.Generator]:
    """Four independent Generators (init, shuffle, augment, dropout) derived from one seed.

    Independent streams mean that turning augmentation on or off does not change
    the initial weights or the batch order.
    """
    children = np.random.SeedSequence(int(seed)).spawn(len(STREAMS))
    return {name: np.random.Generator(np.random.PCG64(child)) for name, child in zip(STREAMS, children)}


def evaluate_split(model, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` in inference mode on x (N, C, H, W), y (N,)."""
    total_loss, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        logits = model.forward(x[start:start + batch_size], training=False)
        labels = y[start:start + batch_size]
        logp = log_softmax(logits.astype(np.float64))
        total_loss -= float(logp[np.arange(len(labels)), labels].sum())
        correct += int((logits.argmax(axis=1) == labels).sum())
    return total_loss / len(x), correct / len(x)


def _format_seconds(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _check_inputs(x_train, y_train, x_val, y_val, config: TrainConfig, augment: Augment | None) -> None:
    for name, x, y in (("train", x_train, y_train), ("validation", x_val, y_val)):
        if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"{name} split: expected x (N, C, H, W) and y (N,), got {x.shape} and {y.shape}")
        if len(x) == 0:
            raise ValueError(f"the {name} split is empty: lower val_fraction or raise train_limit")
        if x.dtype != np.float32:
            raise ValueError(f"{name} images must be float32 (got {x.dtype}); rerun the task that prepares the data")
    if config.augment != (augment is not None):
        raise ValueError(f"config.augment is {config.augment} but augment={'a function' if augment else None} "
                         "was passed: pass the augmentation function exactly when config.augment is true")


def _copy_state(state: dict) -> dict:
    """Deep copy of a model state_dict (nested dicts of arrays and plain values)."""
    if isinstance(state, dict):
        return {k: _copy_state(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return state.copy()
    return state


def _averaged(model) -> dict[str, np.ndarray]:
    """What the moving average follows: every parameter and every buffer, by name.

    BatchNorm's running statistics are averaged with the weights rather than copied from the
    live network: the live statistics describe the activations of the live weights (they are
    themselves a moving average over the last ~10 steps), while averaged statistics follow the
    same window of steps as the averaged weights they will normalise for.
    """
    return {**model.parameters(), **model.buffers()}


def _load_average(model, ema: ExponentialMovingAverage) -> None:
    """Copy the averaged parameters and buffers into ``model``'s live arrays."""
    model.load_state_dict({"params": {k: ema.average[k] for k in model.parameters()},
                           "buffers": {k: ema.average[k] for k in model.buffers()}})


def _ignore(fraction: float, message: str) -> None:
    """The default progress callback: reports go nowhere."""


def train(spec: Any, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
          config: TrainConfig, *, augment: Augment | None = None, checkpoints: CheckpointStore | None = None,
          progress: Progress | None = None) -> TrainResult:
    """Train a model built from ``spec`` (see :func:`pipeline.nn.model.build_model`).

    x_* float32 (N, 1, 28, 28); y_* int64 (N,). ``augment(x_batch, rng)`` transforms
    each training batch (N, 1, 28, 28) when ``config.augment`` is true (and must be
    None otherwise). With ``checkpoints`` a state is saved after every epoch and the
    latest one it gives back is resumed. ``progress(fraction, message)`` is called
    after every batch and every epoch.

    With ``config.ema_decay`` the moving average (updated after every optimizer step) is what
    each epoch validates, what selects the best epoch and what is returned; the live weights
    only train. The average's state is checkpointed with the rest.
    """
    config.validate()
    _check_inputs(x_train, y_train, x_val, y_val, config, augment)
    progress = progress if progress is not None else _ignore
    rngs = seed_streams(config.seed)
    model = build_model(spec, input_shape=tuple(x_train.shape[1:]), rng=rngs["init"])
    model.rng = rngs["dropout"]  # dropout draws from its own stream, so its state is one thing to checkpoint
    optimizer = make_optimizer(config.optimizer, config.learning_rate, config.momentum, config.weight_decay)
    n = len(x_train)
    n_batches = math.ceil(n / config.batch_size)
    per_step = config.schedule in PER_STEP_SCHEDULES
    if per_step:
        schedule = make_schedule(config.schedule, config.learning_rate, config.epochs, steps_per_epoch=n_batches,
                                 warmup_epochs=config.warmup_epochs)
    else:
        # make_schedule's cosine reaches min_lr (0) at its last epoch; one epoch more in its
        # horizon keeps our last epoch learning (at a small rate) instead of wasting it at lr 0.
        horizon = config.epochs + 1 if config.schedule == "cosine" else config.epochs
        schedule = make_schedule(config.schedule, config.learning_rate, horizon)
    loss_fn = SoftmaxCrossEntropy(config.label_smoothing)
    ema = ExponentialMovingAverage(config.ema_decay, _averaged(model)) if config.ema_decay else None
    # The average is scored in a second network of the same spec; its own initial weights are
    # overwritten before every use (a throwaway Generator, so the run's streams are untouched).
    scored = (build_model(spec, input_shape=tuple(x_train.shape[1:]), rng=np.random.default_rng(0))
              if ema is not None else model)

    history: list[dict[str, Any]] = []
    best = {"epoch": 0, "val_acc": -1.0, "val_loss": math.inf, "state": None}
    bad_epochs, start_epoch, stopped_early = 0, 0, False
    state = checkpoints.load_latest() if checkpoints is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for name in ("shuffle", "augment", "dropout"):
            rngs[name].bit_generator.state = state["rng"][name]
        history, best = state["history"], state["best"]
        bad_epochs, start_epoch, stopped_early = state["bad_epochs"], state["epoch"], state["stopped_early"]
        if ema is not None:
            ema.load_state_dict(state["ema"])
        log.info("resuming training after epoch %d", start_epoch)
    resumed_from = start_epoch

    session_start = time.perf_counter()
    session_batches = 0

    if resumed_from:
        progress(resumed_from / config.epochs,
                 f"resumed from the checkpoint of epoch {resumed_from}/{config.epochs}")
    for epoch in range(start_epoch, config.epochs):
        if stopped_early:
            break
        lr = schedule(epoch * n_batches) if per_step else schedule(epoch)  # the epoch's first rate
        optimizer.lr = lr
        epoch_start = time.perf_counter()
        order = rngs["shuffle"].permutation(n)
        loss_sum, correct = 0.0, 0
        for b in range(n_batches):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if augment is not None:
                xb = augment(xb, rngs["augment"])
            if per_step:
                optimizer.lr = schedule(epoch * n_batches + b)
            logits = model.forward(xb, training=True)
            loss = loss_fn.forward(logits, yb)
            model.backward(loss_fn.backward())
            optimizer.step(model.parameters(), model.gradients())
            if ema is not None:
                ema.update(_averaged(model))
            loss_sum += loss * len(idx)
            correct += int((logits.argmax(axis=1) == yb).sum())
            session_batches += 1
            done = epoch * n_batches + b + 1
            elapsed = time.perf_counter() - session_start
            eta = elapsed / session_batches * (config.epochs * n_batches - done)
            seen = b * config.batch_size + len(idx)
            progress(done / (config.epochs * n_batches),
                     f"epoch {epoch + 1}/{config.epochs} batch {b + 1}/{n_batches} "
                     f"loss {loss_sum / seen:.4f} acc {correct / seen:.4f} ETA {_format_seconds(eta)}")
        train_time = time.perf_counter() - epoch_start
        if ema is not None:
            _load_average(scored, ema)
        val_loss, val_acc = evaluate_split(scored, x_val, y_val, config.eval_batch_size)
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / n, "train_acc": correct / n,
                  "val_loss": val_loss, "val_acc": val_acc,
                  "seconds": time.perf_counter() - epoch_start, "images_per_second": n / train_time}
        history.append(record)
        # Ties in accuracy are broken by the loss, so the choice never depends on order alone.
        if val_acc > best["val_acc"] or (val_acc == best["val_acc"] and val_loss < best["val_loss"]):
            best = {"epoch": epoch + 1, "val_acc": val_acc, "val_loss": val_loss,
                    "state": _copy_state(scored.state_dict())}
            bad_epochs = 0
        else:
            bad_epochs += 1
            if config.patience and bad_epochs >= config.patience:
                stopped_early = True
        if checkpoints is not None:
            saved = {
                "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "rng": {name: rngs[name].bit_generator.state for name in ("shuffle", "augment", "dropout")},
                "history": history, "best": best, "bad_epochs": bad_epochs, "stopped_early": stopped_early,
            }
            if ema is not None:
                saved["ema"] = ema.state_dict()
            checkpoints.save(epoch + 1, saved)
        progress((epoch + 1) / config.epochs,
                 f"epoch {epoch + 1}/{config.epochs} done: loss {record['train_loss']:.4f} "
                 f"val_loss {val_loss:.4f} val_acc {val_acc:.4f} ({record['seconds']:.1f}s)"
                 + (" - early stop" if stopped_early else ""))

    model.load_state_dict(best["state"])
    seconds = sum(h["seconds"] for h in history)
    images = sum(n for _ in history)
    train_only = sum(n / h["images_per_second"] for h in history)
    return TrainResult(
        model=model, history=history, best_epoch=best["epoch"], best_val_acc=best["val_acc"],
        best_val_loss=best["val_loss"], stopped_early=stopped_early, train_seconds=seconds,
        params_sha256=sha256_arrays(model.parameters()),
        images_per_second=images / train_only if train_only else 0.0,
        resumed_from_epoch=resumed_from,
    )
