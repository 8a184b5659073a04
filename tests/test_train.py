"""The training loop on a small real-MNIST subset: learning, seeding, best-on-validation,
early stopping, progress, and in-process interruption + exact resume from checkpoints;
and the training stage's result."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import store
from pipeline.nn import model_from_state, sha256_arrays
from pipeline.nn.optim import make_schedule
from pipeline.nn.train import TrainConfig, evaluate_split, seed_streams, train
from pipeline.train.checkpoints import Checkpoints
from pipeline.train.stage import make_augment, run_training, train_stage

MNIST = Path(__file__).resolve().parents[1] / "data" / "mirror" / "mnist"

# Small but real: one conv, dropout (so the dropout RNG matters), two dense layers.
TINY = [
    {"type": "conv", "filters": 6, "kernel": 5},
    {"type": "relu"},
    {"type": "maxpool", "size": 2},
    {"type": "flatten"},
    {"type": "dropout", "rate": 0.3},
    {"type": "dense", "units": 32},
    {"type": "relu"},
    {"type": "dense", "units": 10},
]


@pytest.fixture(scope="module")
def subset():
    """1200 train / 400 validation images from the real MNIST training file, scaled to [0, 1]."""
    if not (MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {MNIST}: copy ../shared/datasets/mnist/*.gz there")
    from pipeline.acquire.idx import read_pair

    images, labels = read_pair(MNIST / "train-images-idx3-ubyte.gz", MNIST / "train-labels-idx1-ubyte.gz")
    x = (images[:1600].astype(np.float32) / 255.0)[:, None]  # (N, 1, 28, 28)
    y = labels[:1600].astype(np.int64)
    return x[:1200], y[:1200], x[1200:], y[1200:]


def _config(**kw):
    base = dict(epochs=4, batch_size=50, learning_rate=2e-3, seed=3, schedule="cosine")
    return TrainConfig(**{**base, **kw})


def test_seed_streams_are_reproducible_and_independent():
    a, b = seed_streams(5), seed_streams(5)
    for name in a:
        assert a[name].random() == b[name].random()
    draws = [seed_streams(5)[name].integers(0, 2**62) for name in ("init", "shuffle", "augment", "dropout")]
    assert len(set(draws)) == 4
    assert seed_streams(6)["init"].random() != seed_streams(5)["init"].random()


def test_training_learns_and_keeps_the_best_validation_epoch(subset):
    x, y, xv, yv = subset
    calls = []
    result = train(TINY, x, y, xv, yv, _config(), progress=lambda f, m: calls.append((f, m)))
    h = result.history
    assert [e["epoch"] for e in h] == [1, 2, 3, 4]
    assert set(h[0]) >= {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"}
    schedule = make_schedule("cosine", 2e-3, 5)  # one epoch beyond the run: the last epoch still learns
    assert [e["lr"] for e in h] == [schedule(i) for i in range(4)]
    assert h[-1]["lr"] > 0 and h[0]["lr"] == 2e-3
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert result.best_val_acc > 0.75  # 1200 real digits, 4 epochs: far above chance (0.1)
    best = max(h, key=lambda e: (e["val_acc"], -e["val_loss"]))
    assert result.best_epoch == best["epoch"] and result.best_val_acc == best["val_acc"]
    # the returned model really holds that epoch's parameters: re-evaluating reproduces its figures
    loss, acc = evaluate_split(result.model, xv, yv)
    assert acc == best["val_acc"] and loss == pytest.approx(best["val_loss"], rel=1e-9)
    assert result.params_sha256 == sha256_arrays(result.model.parameters())
    assert result.train_seconds == pytest.approx(sum(e["seconds"] for e in h))
    assert result.images_per_second > 0 and not result.stopped_early
    # progress: monotone fractions ending at 1, messages with epoch, batch, loss and ETA
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("batch" in m and "loss" in m and "ETA" in m for _, m in calls)
    # unthrottled: one call per batch (1200 / 50 = 24) and one per epoch; the sink throttles
    assert len(calls) == 4 * 24 + 4
    assert sum("done: loss" in m and "val_acc" in m for _, m in calls) == 4


def test_same_seed_same_parameters_other_seed_other_parameters(subset):
    x, y, xv, yv = (a[:400] for a in subset)
    first = run_training(TINY, x, y, xv, yv, _config(epochs=2, augment=True))
    again = run_training(TINY, x, y, xv, yv, _config(epochs=2, augment=True))
    other = run_training(TINY, x, y, xv, yv, _config(epochs=2, augment=True, seed=4))
    assert first.params_sha256 == again.params_sha256
    assert first.params_sha256 != other.params_sha256
    assert first.history[0]["train_loss"] == again.history[0]["train_loss"]


def test_early_stopping_stops_when_validation_stops_improving(subset):
    x, y, xv, yv = subset
    noise = np.random.default_rng(0).integers(0, 10, size=len(yv))  # validation labels carry no signal
    result = train(TINY, x, y, xv, noise, _config(epochs=10, patience=2, learning_rate=3e-3))
    h = result.history
    assert result.stopped_early and len(h) < 10
    # the last `patience` epochs were no better than the best one before them
    best_before = max((e["val_acc"], -e["val_loss"]) for e in h[:-2])
    assert all((e["val_acc"], -e["val_loss"]) <= best_before for e in h[-2:])
    assert result.best_epoch == len(h) - 2


class Interrupt(Exception):
    """Stands in for a crash in the middle of an epoch."""


def _crash_at(epoch_fraction: float):
    def progress(fraction, message):
        if fraction >= epoch_fraction:
            raise Interrupt(message)
    return progress


# Every recipe option on: the moving average's state is checkpointed, the per-step schedule resumes
# at the right step, and the smoothed loss changes nothing about resuming.
RECIPE = dict(ema_decay=0.95, label_smoothing=0.1, schedule="onecycle", warmup_epochs=0.5)


@pytest.mark.parametrize("recipe", [{}, RECIPE], ids=["plain", "ema-onecycle-smoothing"])
def test_interrupted_run_resumes_to_bit_identical_parameters(subset, tmp_path, recipe):
    x, y, xv, yv = (a[:600] for a in subset)
    config = _config(epochs=4, augment=True, **recipe)  # augment + dropout: every RNG stream is in play
    straight = run_training(TINY, x, y, xv, yv, config, checkpoint_dir=tmp_path / "straight")
    saved = store.read_verified_pickle(tmp_path / "straight" / "epoch-0004.pkl")
    assert ("ema" in saved) == bool(recipe)  # the average is checkpointed exactly when there is one
    if recipe:
        assert saved["ema"]["t"] == 4 * 12  # one update per step: 600 / 50 batches, 4 epochs
        assert straight.params_sha256 != run_training(TINY, x, y, xv, yv, _config(epochs=4, augment=True)).params_sha256

    ckpt = tmp_path / "crashing"
    with pytest.raises(Interrupt):
        # dies in the middle of epoch 3 (fraction 0.625 of 4 epochs), after checkpoint 2 was written
        run_training(TINY, x, y, xv, yv, config, checkpoint_dir=ckpt, progress=_crash_at(0.625))
    assert sorted(p.name for p in ckpt.iterdir()) == ["epoch-0001.pkl", "epoch-0002.pkl", "manifest.json"]
    resumed = run_training(TINY, x, y, xv, yv, config, checkpoint_dir=ckpt)
    assert resumed.resumed_from_epoch == 2
    assert resumed.params_sha256 == straight.params_sha256
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in straight.history]
    assert resumed.best_epoch == straight.best_epoch
    # only the newest two checkpoints are kept
    assert sorted(p.name for p in ckpt.iterdir()) == ["epoch-0003.pkl", "epoch-0004.pkl", "manifest.json"]

    # a finished run's checkpoints give the result again without training
    again = run_training(TINY, x, y, xv, yv, config, checkpoint_dir=ckpt)
    assert again.resumed_from_epoch == 4 and again.params_sha256 == straight.params_sha256


def _resume_after_spoiling_the_newest_checkpoint(subset, tmp_path, spoil):
    """Crash a 3-epoch run after checkpoint 2, let ``spoil(bytes) -> bytes`` change that checkpoint,
    resume; return (uninterrupted result, resumed result)."""
    x, y, xv, yv = (a[:400] for a in subset)
    config = _config(epochs=3)
    straight = train(TINY, x, y, xv, yv, config)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Interrupt):
        run_training(TINY, x, y, xv, yv, config, checkpoint_dir=ckpt, progress=_crash_at(0.99))
    newest = ckpt / "epoch-0002.pkl"
    newest.write_bytes(spoil(newest.read_bytes()))
    return straight, run_training(TINY, x, y, xv, yv, config, checkpoint_dir=ckpt)


def test_unreadable_newest_checkpoint_falls_back_to_the_previous_one(subset, tmp_path):
    # truncated, as by a full disk
    straight, resumed = _resume_after_spoiling_the_newest_checkpoint(subset, tmp_path, lambda b: b[:100])
    assert resumed.resumed_from_epoch == 1
    assert resumed.params_sha256 == straight.params_sha256


def test_a_tampered_checkpoint_is_never_unpickled(subset, tmp_path):
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    straight, resumed = _resume_after_spoiling_the_newest_checkpoint(
        subset, tmp_path, lambda b: pickle.dumps({"epoch": 2, "evil": Payload()}))
    assert not (tmp_path / "pwned").exists()
    assert resumed.resumed_from_epoch == 1  # the changed checkpoint was skipped, the older one verified
    assert resumed.params_sha256 == straight.params_sha256


def test_checkpoint_of_another_run_is_ignored(subset, tmp_path):
    x, y, xv, yv = (a[:400] for a in subset)
    ckpt = tmp_path / "ckpt"
    run_training(TINY, x, y, xv, yv, _config(epochs=2, seed=1), checkpoint_dir=ckpt)
    fresh = run_training(TINY, x, y, xv, yv, _config(epochs=2, seed=2))
    reused_dir = run_training(TINY, x, y, xv, yv, _config(epochs=2, seed=2), checkpoint_dir=ckpt)
    assert reused_dir.resumed_from_epoch == 0
    assert reused_dir.params_sha256 == fresh.params_sha256
    other_data = run_training(TINY, x[::-1].copy(), y[::-1].copy(), xv, yv, _config(epochs=2, seed=2),
                              checkpoint_dir=ckpt)
    assert other_data.resumed_from_epoch == 0
    # nor one of the same run but for a recipe option (here the moving average, which needs its state)
    averaged = run_training(TINY, x, y, xv, yv, _config(epochs=2, seed=2, ema_decay=0.9), checkpoint_dir=ckpt)
    assert averaged.resumed_from_epoch == 0


def test_checkpoints_keep_only_the_newest_two(tmp_path):
    c = Checkpoints(tmp_path, fingerprint="f")
    for epoch in range(1, 6):
        c.save(epoch, {"epoch": epoch})
    assert [e for e, _ in c.existing()] == [4, 5]
    assert c.load_latest()["epoch"] == 5
    assert Checkpoints(tmp_path, fingerprint="g").load_latest() is None


def test_a_checkpoint_the_manifest_does_not_yet_vouch_for_is_skipped(tmp_path, caplog):
    """A kill between a checkpoint's pickle and the manifest rewrite: resume from the one before."""
    from pipeline import store

    c = Checkpoints(tmp_path, fingerprint="f")
    c.save(1, {"epoch": 1})
    store.write_pickle(c.path(2), {"epoch": 2, "version": 1, "fingerprint": "f"})  # no manifest rewrite
    with caplog.at_level("WARNING"):
        assert c.load_latest()["epoch"] == 1
    assert f"ignoring checkpoint {c.path(2)}" in caplog.text


def test_bad_settings_and_data_are_refused_with_the_fix(subset):
    x, y, xv, yv = subset
    with pytest.raises(ValueError, match="optimizer must be 'adam' or 'sgd'"):
        train(TINY, x, y, xv, yv, _config(optimizer="rmsprop"))
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        train(TINY, x, y, xv, yv, _config(epochs=0))
    with pytest.raises(ValueError, match="float32"):
        train(TINY, x.astype(np.float64), y, xv, yv, _config())
    with pytest.raises(ValueError, match="validation split is empty"):
        train(TINY, x, y, xv[:0], yv[:0], _config())
    # the augmentation function is passed exactly when the configuration asks for augmentation
    with pytest.raises(ValueError, match="config.augment is True"):
        train(TINY, x, y, xv, yv, _config(augment=True))
    with pytest.raises(ValueError, match="config.augment is False"):
        train(TINY, x, y, xv, yv, _config(), augment=make_augment(_config(augment=True)))


class MemoryCheckpoints:
    """A checkpoint store in memory: the engine needs only save() and load_latest()."""

    def __init__(self):
        self.saved = {}

    def save(self, epoch, state):
        import pickle
        self.saved[epoch] = pickle.dumps(state)  # a snapshot, as a file would be

    def load_latest(self):
        import pickle
        return pickle.loads(self.saved[max(self.saved)]) if self.saved else None


def test_engine_resumes_from_any_checkpoint_store_and_draws_augmentation_from_its_stream(subset):
    x, y, xv, yv = (a[:400] for a in subset)
    config = _config(epochs=3, augment=True)
    seen = []

    def augment(xb, rng):  # the stage's augmentation, recording which Generator it is handed
        seen.append(rng)
        return make_augment(config)(xb, rng)

    straight = train(TINY, x, y, xv, yv, config, augment=augment)
    assert len({id(r) for r in seen}) == 1 and len(seen) == 3 * 8  # one stream, every batch (400 / 50)
    assert straight.params_sha256 == run_training(TINY, x, y, xv, yv, config).params_sha256
    memory = MemoryCheckpoints()
    with pytest.raises(Interrupt):
        train(TINY, x, y, xv, yv, config, augment=augment, checkpoints=memory, progress=_crash_at(0.5))
    assert sorted(memory.saved) == [1]
    resumed = train(TINY, x, y, xv, yv, config, augment=augment, checkpoints=memory)
    assert resumed.resumed_from_epoch == 1 and resumed.params_sha256 == straight.params_sha256


def test_train_stage_returns_the_run_as_one_result(subset, tmp_path):
    x, y, xv, yv = (a[:300] for a in subset)
    data = {"x_train": x, "y_train": y, "x_val": xv, "y_val": yv}
    config = _config(epochs=2, augment=True)
    calls = []
    result = train_stage(data, "simple", config, tmp_path / "ckpt", progress=lambda f, m: calls.append((f, m)))
    direct = run_training(result.summary["spec"], x, y, xv, yv, config)
    s = result.summary
    assert s["params_sha256"] == direct.params_sha256 and s["preset"] == "simple"
    assert s["epochs"] == s["epochs_run"] == 2 and s["n_train"] == 300 and s["n_val"] == 300
    assert s["augment"] == {"max_shift_px": 2, "max_rotation_deg": 10.0}
    assert s["optimizer"] == {"name": "adam", "learning_rate": 2e-3, "weight_decay": 0.0, "schedule": "cosine"}
    assert s["ema_decay"] == 0.0 and s["label_smoothing"] == 0.0
    assert [h["val_loss"] for h in s["history"]] == [h["val_loss"] for h in direct.history]
    assert s["best_val_accuracy"] == max(h["val_acc"] for h in s["history"])
    assert "best validation accuracy" in s["selection"]
    assert calls[-1][0] == 1.0 and calls[-1][1].startswith("epoch 2/2 done: loss")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["epoch-0001.pkl", "epoch-0002.pkl",
                                                                     "manifest.json"]
    headline = dict(result.headline)
    assert headline["Best epoch"] == s["best_epoch"]
    assert headline["Best validation accuracy"] == f"{100 * s['best_val_accuracy']:.2f}%"
    assert headline["Epochs run"] == 2 and headline["Parameters sha256"] == s["params_sha256"][:12]
    table = result.tables[0].frame
    assert list(table.index) == [1, 2] and list(table["val_acc"]) == [h["val_acc"] for h in s["history"]]
    (figure,) = result.figures
    assert f"best in epoch {s['best_epoch']} of 2" in figure.caption
    assert f"{100 * s['best_val_accuracy']:.2f}%" in figure.caption
    assert result.texts["model"].startswith("Layer (type)")
    model = model_from_state(result.artifacts["model"])
    assert sha256_arrays(model.parameters()) == s["params_sha256"]
    # everything but the model and the figure is JSON: it goes into result.json as it is
    store.json_bytes(result.index())


def test_train_stage_records_the_recipe_options(subset, tmp_path):
    x, y, xv, yv = (a[:200] for a in subset)
    data = {"x_train": x, "y_train": y, "x_val": xv, "y_val": yv}
    config = _config(epochs=2, **RECIPE)
    result = train_stage(data, "simple", config)
    s = result.summary
    assert s["ema_decay"] == 0.95 and s["label_smoothing"] == 0.1
    assert s["optimizer"] == {"name": "adam", "learning_rate": 2e-3, "weight_decay": 0.0, "schedule": "onecycle",
                              "warmup_epochs": 0.5, "per_step": True}
    assert s["selection"].startswith("moving average of the weights (decay 0.95)")
    caption = result.figures[0].caption
    assert "moving average of the weights (decay 0.95)" in caption and "smoothed by 0.1" in caption
    # the model kept is the average that validated best: re-scoring it gives the recorded figure
    loss, acc = evaluate_split(model_from_state(result.artifacts["model"]), xv, yv)
    assert acc == s["best_val_accuracy"] and loss == pytest.approx(s["best_val_loss"], rel=1e-9)
