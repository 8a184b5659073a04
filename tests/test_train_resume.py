"""Exact resume for real: SIGKILL the TrainCNN process after its epoch-2 checkpoint,
rerun the same command, and compare params_sha256 with an uninterrupted run.

Each run is a separate ``python -m luigi --module tasks.train TrainCNN`` process on a
small real-MNIST subset (the first run also fetches from the bundled copy,
cleans and prepares; the later runs find those complete).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import MNIST_DIR, REPO, storage_at

ARGS = {"train-limit": 1500, "epochs": 4, "seed": 11, "preset": "simple", "batch-size": 50,
        "learning-rate": 0.002}


def _command(root: Path) -> list[str]:
    cmd = [sys.executable, "-m", "luigi", "--module", "tasks.train", "TrainCNN", "--local-scheduler",
           "--storage-data-dir", str(root / "data"), "--storage-report-dir", str(root / "reports"),
           "--FetchMNIST-mirrors", json.dumps([str(MNIST_DIR)]), "--augment", "true"]
    for key, value in ARGS.items():
        cmd += [f"--{key}", str(value)]
    return cmd


def _record(out_dir: Path) -> tuple[dict, list[dict]]:
    """The training record (result.json's summary) and its per-epoch history."""
    summary = json.loads((out_dir / "result.json").read_text())["summary"]
    return summary, summary["history"]


def _run(root: Path, log: Path) -> None:
    with open(log, "ab") as out:
        done = subprocess.run(_command(root), cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=300)
    assert done.returncode == 0, log.read_text()[-3000:]


def _epoch(name: str) -> int:
    return int(name.split("-")[1].split(".")[0])


def _newest_trusted_epoch(ckpt_dir: Path) -> int:
    """The newest checkpoint the directory's manifest vouches for (the one a rerun may resume from)."""
    listed = json.loads((ckpt_dir / "manifest.json").read_text())["files"]
    return max(_epoch(name) for name in listed if name.startswith("epoch-") and (ckpt_dir / name).is_file())


def _task(root: Path):
    from tasks.train import TrainCNN

    with storage_at(root):
        task = TrainCNN(train_limit=1500, epochs=4, seed=11, preset="simple", batch_size=50,
                        learning_rate=0.002, augment=True)
        return Path(task.output().path).parent, task.checkpoint_dir()


def test_killed_training_resumes_to_bit_identical_parameters(tmp_path):
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {MNIST_DIR}: copy ../shared/datasets/mnist/*.gz there")
    out_dir, ckpt_dir = _task(tmp_path)
    log = tmp_path / "runs.log"

    # 1. uninterrupted reference run
    _run(tmp_path, log)
    reference, reference_history = _record(out_dir)
    assert reference["resumed_from_epoch"] == 0 and reference["epochs_run"] == 4
    assert not ckpt_dir.exists()  # checkpoints are removed once the output is in place
    os.rename(out_dir, tmp_path / "reference")

    # 2. the same command, killed with SIGKILL as soon as the epoch-2 checkpoint exists
    with open(log, "ab") as out:
        proc = subprocess.Popen(_command(tmp_path), cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        try:
            while not (ckpt_dir / "epoch-0002.pkl").exists():
                assert proc.poll() is None, "training ended before it could be killed:\n" + log.read_text()[-3000:]
                assert time.monotonic() < deadline, "no epoch-2 checkpoint within 240 s"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not out_dir.exists()  # the task died before writing any output
    newest_file = max(_epoch(p.name) for p in ckpt_dir.glob("epoch-*.pkl"))
    killed_at = _newest_trusted_epoch(ckpt_dir)
    # The kill may land between a checkpoint's pickle and the manifest rewrite that vouches
    # for it: that checkpoint must then be ignored and the one before it resumed from.
    assert 1 <= killed_at < 4 and newest_file - killed_at in (0, 1)

    # 3. rerun: resumes from the last checkpoint and ends bit-identical
    _run(tmp_path, log)
    resumed, history = _record(out_dir)
    assert resumed["resumed_from_epoch"] == killed_at
    assert resumed["params_sha256"] == reference["params_sha256"]
    assert resumed["best_epoch"] == reference["best_epoch"]
    assert [h["val_loss"] for h in history] == [h["val_loss"] for h in reference_history]
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in reference_history]
    assert resumed["best_val_accuracy"] > 0.8  # and it learned: 1350 real digits, 4 epochs (chance: 0.1)
    assert f"resumed from the checkpoint of epoch {killed_at}/4" in log.read_text()
    if newest_file > killed_at:
        assert f"ignoring checkpoint {ckpt_dir / f'epoch-{newest_file:04d}.pkl'}" in log.read_text()
    assert not ckpt_dir.exists()
