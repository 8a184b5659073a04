"""The flat ``metrics.json`` of one run: what the run index, history.csv and cron jobs read."""
from __future__ import annotations

import datetime as _dt
from typing import Any


def metrics_record(run_id: str, params: dict[str, Any], train: dict[str, Any], evaluation: dict[str, Any],
                   command: str) -> dict[str, Any]:
    """One run's record from its parameters (typed values), the training stage's summary,
    the evaluation stage's summary and the command line that regenerates it."""
    return {
        "run_id": run_id,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "test_accuracy": float(evaluation["test_accuracy"]),
        "test_accuracy_ci95": evaluation.get("ci95"),
        "test_error_count": evaluation.get("n_errors"),
        "n_test": evaluation.get("n_test"),
        "ece": evaluation.get("ece"),
        "best_val_accuracy": train.get("best_val_accuracy"),
        "epochs": int(params["epochs"]),
        "epochs_run": train.get("epochs_run"),
        "seed": int(params["seed"]),
        "preset": params["preset"],
        "train_limit": int(params.get("train_limit", 0)),
        "train_seconds": float(train["train_seconds"]),
        "params_sha256": train["params_sha256"],
        "parameters": params,
        "rerun_command": command,
    }
