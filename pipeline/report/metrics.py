"""The flat ``metrics.json`` of one run: what the run index, history.csv and cron jobs read."""
from __future__ import annotations

import datetime as _dt
from typing import Any


def members(train: dict[str, Any], evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's models, one record each (member, seed, best_epoch, epochs_run, best_val_accuracy,
    test_accuracy, test_errors, train_seconds, params_sha256): an ensemble's from its evaluation,
    a single model's from its training and evaluation summaries."""
    if "members" in evaluation:
        return evaluation["members"]
    return [{"member": 0, "seed": train.get("seed"), "best_epoch": train.get("best_epoch"),
             "epochs_run": train.get("epochs_run"), "best_val_accuracy": train.get("best_val_accuracy"),
             "test_accuracy": float(evaluation["test_accuracy"]), "test_errors": evaluation.get("n_errors"),
             "train_seconds": float(train["train_seconds"]), "params_sha256": train["params_sha256"]}]


def metrics_record(run_id: str, params: dict[str, Any], train: dict[str, Any], evaluation: dict[str, Any],
                   command: str) -> dict[str, Any]:
    """One run's record from its parameters (typed values), the training stage's summary (an
    ensemble's member 0), the evaluation stage's summary and the command line that regenerates it.

    ``ensemble`` is the number of models and ``members`` describes each (:func:`members`). The
    test numbers are the run's classifier's: for an ensemble, the averaged probabilities'; its
    best_val_accuracy is the ensemble's validation accuracy, train_seconds and epochs_run the
    members' totals (the work, whatever ran in parallel), params_sha256 the ensemble digest.
    """
    models = members(train, evaluation)
    ensemble = len(models) > 1
    return {
        "run_id": run_id,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "test_accuracy": float(evaluation["test_accuracy"]),
        "test_accuracy_ci95": evaluation.get("ci95"),
        "test_error_count": evaluation.get("n_errors"),
        "n_test": evaluation.get("n_test"),
        "ece": evaluation.get("ece"),
        "best_val_accuracy": evaluation.get("val_accuracy") if ensemble else train.get("best_val_accuracy"),
        "epochs": int(params["epochs"]),
        "epochs_run": sum(m["epochs_run"] for m in models) if ensemble else train.get("epochs_run"),
        "seed": int(params["seed"]),
        "preset": params["preset"],
        "train_limit": int(params.get("train_limit", 0)),
        "train_seconds": float(sum(m["train_seconds"] for m in models)),
        "params_sha256": evaluation["model_params_sha256"] if ensemble else train["params_sha256"],
        "ensemble": len(models),
        "members": models,
        "parameters": params,
        "rerun_command": command,
    }
