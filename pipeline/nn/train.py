"""The training loop: epochs of shuffled mini-batches, per-epoch validation,
best-on-validation parameters, optional early stopping, and per-epoch
checkpoints from which a killed run resumes *exactly*.

Exact resume works because everything random comes from four Generators
spawned from one seed (:func:`seed_streams`) and each one's state goes into
the checkpoint with the model, the optimizer state and the history; reloading
them and replaying the remaining epochs performs the very same floating-point
operations as an uninterrupted run, so the final parameters are bit-identical.

Data: ``x`` float32 (N, 1, 28, 28) NCHW, ``y`` int64 (N,). Only the
validation split chooses epochs; the test split never enters this module.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline import store
from pipeline.data.augment import augment_batch
from pipeline.nn.losses import SoftmaxCrossEntropy, log_softmax
from pipeline.nn.model import build_model
from pipeline.nn.optim import SGD, Adam, make_schedule

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
CHECKPOINT_VERSION = 1
STREAMS = ("init", "shuffle", "augment", "dropout")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained parameters (and a few things that do not)."""

    epochs: int = 12
    batch_size: int = 100
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # adam | sgd (SGD uses Nesterov momentum 0.9)
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | step | cosine
    augment: bool = False
    max_shift: int = 2  # pixels, when augmenting
    max_degrees: float = 10.0  # degrees, when augmenting
    patience: int = 0  # epochs without a better validation score before stopping; 0 = never
    seed: int = 0
    eval_batch_size: int = 1000  # does not change results, only memory and speed

    def validate(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1 (got {self.epochs})")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1 (got {self.batch_size})")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0 (got {self.learning_rate})")
        if self.optimizer not in ("adam", "sgd"):
            problems.append(f"optimizer must be 'adam' or 'sgd' (got {self.optimizer!r})")
        if self.schedule not in ("constant", "step", "cosine"):
            problems.append(f"schedule must be constant, step or cosine (got {self.schedule!r})")
        if self.patience < 0 or self.weight_decay < 0:
            problems.append("patience and weight_decay must be >= 0")
        if problems:
            raise ValueError("bad training configuration: " + "; ".join(problems))

    def fingerprint_fields(self) -> dict[str, Any]:
        """The fields that change the result (a checkpoint is reused only if they match)."""
        fields = dataclasses.asdict(self)
        fields.pop("eval_batch_size")
        return fields


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


def make_optimizer(config: TrainConfig):
    if config.optimizer == "adam":
        return Adam(lr=config.learning_rate, weight_decay=config.weight_decay)
    return SGD(lr=config.learning_rate, momentum=config.momentum, nesterov=True,
               weight_decay=config.weight_decay)


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


def _check_data(x_train, y_train, x_val, y_val) -> None:
    for name, x, y in (("train", x_train, y_train), ("validation", x_val, y_val)):
        if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"{name} split: expected x (N, C, H, W) and y (N,), got {x.shape} and {y.shape}")
        if len(x) == 0:
            raise ValueError(f"the {name} split is empty: lower val_fraction or raise train_limit")
        if x.dtype != np.float32:
            raise ValueError(f"{name} images must be float32 (got {x.dtype}); rerun PrepareData")


class Checkpoints:
    """Per-epoch checkpoints ``epoch-0007.pkl`` in one directory, written atomically.

    Only the newest two are kept (the older one is a spare should the newest be unreadable).
    A checkpoint whose fingerprint differs from the current run (other data,
    configuration or model) is ignored, never resumed from.
    """

    PATTERN = re.compile(r"^epoch-(\d{4,})\.pkl$")

    def __init__(self, directory: str | Path, fingerprint: str, keep: int = 2) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.keep = keep

    def path(self, epoch: int) -> Path:
        return self.directory / f"epoch-{epoch:04d}.pkl"

    def existing(self) -> list[tuple[int, Path]]:
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := self.PATTERN.match(p.name))]
        return sorted(found)

    def save(self, epoch: int, state: dict[str, Any]) -> Path:
        path = self.path(epoch)
        store.write_pickle(path, {**state, "version": CHECKPOINT_VERSION, "fingerprint": self.fingerprint})
        for old_epoch, old in self.existing()[:-self.keep]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self) -> dict[str, Any] | None:
        for epoch, path in reversed(self.existing()):
            try:
                state = store.read_pickle(path)
            except (ValueError, OSError) as exc:
                log.warning("ignoring unreadable checkpoint %s: %s", path, exc)
                continue
            if state.get("version") != CHECKPOINT_VERSION or state.get("fingerprint") != self.fingerprint:
                log.warning("ignoring checkpoint %s: it belongs to another run (data, model or settings differ)", path)
                return None
            return state
        return None


def run_fingerprint(spec: Any, config: TrainConfig, arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the model spec, the result-changing settings and the data."""
    import hashlib
    import json

    head = json.dumps({"spec": store.to_jsonable(spec), "config": config.fingerprint_fields()},
                      sort_keys=True, default=str)
    return hashlib.sha256(head.encode() + store.sha256_arrays(arrays).encode()).hexdigest()


def _copy_state(state: dict) -> dict:
    """Deep copy of a model state_dict (nested dicts of arrays and plain values)."""
    if isinstance(state, dict):
        return {k: _copy_state(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return state.copy()
    return state


def train(spec: Any, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
          config: TrainConfig, checkpoint_dir: str | Path | None = None,
          progress: Progress | None = None, progress_interval: float = 1.0) -> TrainResult:
    """Train a model built from ``spec`` (see :func:`pipeline.nn.model.build_model`).

    x_* float32 (N, 1, 28, 28); y_* int64 (N,). With ``checkpoint_dir`` a checkpoint
    is written after every epoch and an existing one of the same run is resumed.
    ``progress(fraction, message)`` is called at most every ``progress_interval``
    seconds and after every epoch.
    """
    config.validate()
    _check_data(x_train, y_train, x_val, y_val)
    rngs = seed_streams(config.seed)
    model = build_model(spec, input_shape=tuple(x_train.shape[1:]), rng=rngs["init"])
    model.rng = rngs["dropout"]  # dropout draws from its own stream, so its state is one thing to checkpoint
    optimizer = make_optimizer(config)
    # make_schedule's cosine reaches min_lr (0) at its last epoch; one epoch more in its
    # horizon keeps our last epoch learning (at a small rate) instead of wasting it at lr 0.
    horizon = config.epochs + 1 if config.schedule == "cosine" else config.epochs
    schedule = make_schedule(config.schedule, config.learning_rate, horizon)
    loss_fn = SoftmaxCrossEntropy()

    history: list[dict[str, Any]] = []
    best = {"epoch": 0, "val_acc": -1.0, "val_loss": math.inf, "state": None}
    bad_epochs, start_epoch, stopped_early = 0, 0, False
    checkpoints = None
    if checkpoint_dir is not None:
        fingerprint = run_fingerprint(spec, config, {"x_train": x_train, "y_train": y_train,
                                                     "x_val": x_val, "y_val": y_val})
        checkpoints = Checkpoints(checkpoint_dir, fingerprint)
        state = checkpoints.load_latest()
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            for name in ("shuffle", "augment", "dropout"):
                rngs[name].bit_generator.state = state["rng"][name]
            history, best = state["history"], state["best"]
            bad_epochs, start_epoch, stopped_early = state["bad_epochs"], state["epoch"], state["stopped_early"]
            log.info("resuming training after epoch %d from %s", start_epoch, checkpoint_dir)
    resumed_from = start_epoch

    n = len(x_train)
    n_batches = math.ceil(n / config.batch_size)
    session_start = time.perf_counter()
    last_report = -math.inf
    session_batches = 0

    def report(fraction: float, message: str, force: bool = False) -> None:
        nonlocal last_report
        now = time.perf_counter()
        if progress is not None and (force or now - last_report >= progress_interval):
            last_report = now
            progress(fraction, message)

    if resumed_from:
        report(resumed_from / config.epochs,
               f"resumed from the checkpoint of epoch {resumed_from}/{config.epochs} in {checkpoint_dir}", force=True)
    for epoch in range(start_epoch, config.epochs):
        if stopped_early:
            break
        lr = schedule(epoch)
        optimizer.lr = lr
        epoch_start = time.perf_counter()
        order = rngs["shuffle"].permutation(n)
        loss_sum, correct = 0.0, 0
        for b in range(n_batches):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if config.augment:
                xb = augment_batch(xb, rngs["augment"], config.max_shift, config.max_degrees)
            logits = model.forward(xb, training=True)
            loss = loss_fn.forward(logits, yb)
            model.backward(loss_fn.backward())
            optimizer.step(model.parameters(), model.gradients())
            loss_sum += loss * len(idx)
            correct += int((logits.argmax(axis=1) == yb).sum())
            session_batches += 1
            done = epoch * n_batches + b + 1
            elapsed = time.perf_counter() - session_start
            eta = elapsed / session_batches * (config.epochs * n_batches - done)
            seen = b * config.batch_size + len(idx)
            report(done / (config.epochs * n_batches),
                   f"epoch {epoch + 1}/{config.epochs} batch {b + 1}/{n_batches} "
                   f"loss {loss_sum / seen:.4f} acc {correct / seen:.4f} ETA {_format_seconds(eta)}")
        train_time = time.perf_counter() - epoch_start
        val_loss, val_acc = evaluate_split(model, x_val, y_val, config.eval_batch_size)
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / n, "train_acc": correct / n,
                  "val_loss": val_loss, "val_acc": val_acc,
                  "seconds": time.perf_counter() - epoch_start, "images_per_second": n / train_time}
        history.append(record)
        # Ties in accuracy are broken by the loss, so the choice never depends on order alone.
        if val_acc > best["val_acc"] or (val_acc == best["val_acc"] and val_loss < best["val_loss"]):
            best = {"epoch": epoch + 1, "val_acc": val_acc, "val_loss": val_loss,
                    "state": _copy_state(model.state_dict())}
            bad_epochs = 0
        else:
            bad_epochs += 1
            if config.patience and bad_epochs >= config.patience:
                stopped_early = True
        if checkpoints is not None:
            checkpoints.save(epoch + 1, {
                "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "rng": {name: rngs[name].bit_generator.state for name in ("shuffle", "augment", "dropout")},
                "history": history, "best": best, "bad_epochs": bad_epochs, "stopped_early": stopped_early,
            })
        report((epoch + 1) / config.epochs,
               f"epoch {epoch + 1}/{config.epochs} done: loss {record['train_loss']:.4f} "
               f"val_loss {val_loss:.4f} val_acc {val_acc:.4f} ({record['seconds']:.1f}s)"
               + (" - early stop" if stopped_early else ""), force=True)

    model.load_state_dict(best["state"])
    seconds = sum(h["seconds"] for h in history)
    images = sum(n for _ in history)
    train_only = sum(n / h["images_per_second"] for h in history)
    return TrainResult(
        model=model, history=history, best_epoch=best["epoch"], best_val_acc=best["val_acc"],
        best_val_loss=best["val_loss"], stopped_early=stopped_early, train_seconds=seconds,
        params_sha256=store.sha256_arrays(model.parameters()),
        images_per_second=images / train_only if train_only else 0.0,
        resumed_from_epoch=resumed_from,
    )


def terminal_progress(stream=None, every: float = 10.0) -> Progress:
    """A progress callback for a terminal: one rewritten line on a TTY, else a log line every ``every`` s."""
    stream = stream if stream is not None else sys.stderr
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    last = [-math.inf]

    def show(fraction: float, message: str) -> None:
        line = f"[{100 * fraction:5.1f}%] {message}"
        if is_tty:
            stream.write("\r" + line[:150].ljust(100) + ("\n" if fraction >= 1.0 else ""))
            stream.flush()
        elif time.perf_counter() - last[0] >= every or fraction >= 1.0 or "done" in message:
            last[0] = time.perf_counter()
            stream.write(line + "\n")
            stream.flush()

    return show

