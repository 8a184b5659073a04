"""The recipe options as task parameters: off, they leave every task id, slug and run id as it
was; on, they rename exactly the tasks whose output they change; and the rerun_command of a run
that used them, run for real with the `luigi` command, reproduces its model bit for bit."""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

LEVERS = {"ema_decay": 0.9, "label_smoothing": 0.1, "schedule": "onecycle", "warmup_epochs": 0.5}


def test_options_at_their_neutral_values_are_the_tasks_that_existed_before_them():
    from tasks import EvaluateCNN, RenderReport, RunPipeline, TrainCNN

    neutral = dict(ema_decay=0.0, label_smoothing=0.0, warmup_epochs=0.0)
    for task in (TrainCNN(**neutral), EvaluateCNN(tta=0, **neutral), RenderReport(tta=0, **neutral)):
        assert not {"ema_decay", "label_smoothing", "warmup_epochs", "tta"} & set(task.to_str_params())
    # what named a model before the options existed still names it, with the options at their neutral values
    assert set(TrainCNN(**neutral).to_str_params(only_significant=True)) == {
        "augment", "batch_size", "clean_policy", "epochs", "learning_rate", "normalization", "optimizer",
        "patience", "preset", "schedule", "seed", "train_limit", "val_fraction", "weight_decay"}
    assert RenderReport(**neutral).run_id() == "twoconv-e12-s42-98a832f4"  # the id the default run had before
    assert EvaluateCNN(tta=0, **neutral).requires()["models"] == [TrainCNN(**neutral)]
    # The default now smooths labels (0.1, chosen on validation): a model of its own, with its own name.
    assert TrainCNN().label_smoothing == 0.1 and TrainCNN().to_str_params()["label_smoothing"] == "0.1"
    assert TrainCNN().slug() != TrainCNN(**neutral).slug()
    assert RunPipeline(tta=0, ema_decay=0.0, warmup_epochs=0.0) == RunPipeline()


@pytest.mark.parametrize("option", [{"ema_decay": 0.999}, {"label_smoothing": 0.2}, {"schedule": "onecycle"},
                                    {"schedule": "onecycle", "warmup_epochs": 0.5}])
def test_a_training_option_renames_the_model_and_everything_after_it(option):
    from tasks import EvaluateCNN, RenderReport, TrainCNN

    train = TrainCNN(**option)
    assert train.slug() != TrainCNN().slug() and train.slug().startswith("twoconv-e12-s42-")
    assert EvaluateCNN(**option).requires()["models"] == [train]
    assert RenderReport(**option).run_id() != RenderReport().run_id()
    assert {k: v for k, v in train.train_config().fingerprint_fields().items() if k in option} == option


def test_tta_renames_the_evaluation_but_reuses_the_model():
    from tasks import EvaluateCNN, RenderReport, TrainCNN

    evaluation = EvaluateCNN(tta=1)
    assert evaluation.slug() != EvaluateCNN().slug()
    assert evaluation.requires()["models"] == [TrainCNN()]  # nothing is retrained for TTA
    assert RenderReport(tta=1).run_id() != RenderReport().run_id()


def test_bad_option_values_are_refused_when_the_task_is_built():
    from tasks import EvaluateCNN, TrainCNN

    with pytest.raises(ValueError, match="ema_decay must be in"):
        TrainCNN(ema_decay=1.0)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        TrainCNN(label_smoothing=1.5)
    with pytest.raises(ValueError, match="onecycle schedule only"):
        TrainCNN(warmup_epochs=1.0)  # the default schedule is cosine
    with pytest.raises(ValueError, match="tta must be 0"):
        EvaluateCNN(tta=4)


def test_rerun_command_names_every_option():
    from tasks import RenderReport
    from tasks.report import rerun_command
    from test_report import _parsed

    task = RenderReport(tta=2, **LEVERS)
    command = rerun_command(task)
    for flag in ("--ema-decay 0.9", "--label-smoothing 0.1", "--warmup-epochs 0.5", "--tta 2",
                 "--RunPipeline-schedule onecycle"):
        assert flag in command
    assert _parsed(command).to_str_params(only_significant=True) == task.to_str_params(only_significant=True)
    assert "--ema-decay 0.0" in rerun_command(RenderReport())  # explicit: luigi.cfg may set another default


def _luigi(args: list[str], root: Path) -> subprocess.CompletedProcess:
    mirror = json.dumps([str(REPO / "data" / "mirror" / "mnist")])
    return subprocess.run(args + ["--FetchMNIST-mirrors", mirror, "--storage-data-dir", str(root / "data"),
                                  "--storage-report-dir", str(root / "reports")],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def _metrics(root: Path) -> dict:
    (path,) = [p for p in (root / "reports").glob("*/metrics.json") if not p.parent.is_symlink()]
    return json.loads(path.read_text())


@pytest.mark.slow
def test_rerun_command_of_a_run_with_every_option_reproduces_its_model(mnist_dir, tmp_path):
    args = ["luigi", "--module", "tasks", "RunPipeline", "--local-scheduler", "--train-limit", "500",
            "--epochs", "1", "--preset", "simple", "--seed", "3", "--ema-decay", "0.9", "--label-smoothing", "0.1",
            "--RunPipeline-schedule", "onecycle", "--warmup-epochs", "0.5", "--tta", "1"]
    done = _luigi(args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = _metrics(tmp_path)
    assert metrics["parameters"].items() >= {**LEVERS, "tta": 1}.items()  # every option reached the tasks
    (model_dir,) = (tmp_path / "data" / "models").glob("simple-*")
    training = json.loads((model_dir / "result.json").read_text())["summary"]
    assert training["ema_decay"] == 0.9 and training["label_smoothing"] == 0.1
    assert training["optimizer"]["schedule"] == "onecycle" and training["optimizer"]["warmup_epochs"] == 0.5
    (eval_dir,) = (tmp_path / "data" / "eval").glob("simple-*")
    tta = json.loads((eval_dir / "result.json").read_text())["summary"]["tta"]
    assert tta["level"] == 1 and 0 < tta["val_accuracy_without"] <= 1

    # The model, its evaluation and the report removed, the recorded command trains and scores again
    # (on the same prepared data) and must give the very same parameters and run id.
    for stage in ("models", "eval"):
        shutil.rmtree(tmp_path / "data" / stage)
    shutil.rmtree(tmp_path / "reports")
    again = _luigi(shlex.split(metrics["rerun_command"]), tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "TrainCNN: best epoch" in again.stderr  # it really trained again
    repeated = _metrics(tmp_path)
    assert repeated["run_id"] == metrics["run_id"]
    assert repeated["params_sha256"] == metrics["params_sha256"]
    assert repeated["parameters"] == metrics["parameters"]
    assert repeated["test_accuracy"] == metrics["test_accuracy"]
