"""This run against the previous run and the best run of its report directory.

Definitions, stated on the page too:

* the *other runs* are the runs of the report directory, other than this run id, whose
  ``metrics.json`` verifies and that were rendered no later than this run;
* *previous* is the newest of them (by ``created``, then run id);
* *best* is the one with the highest test accuracy (the earliest of equals).

Each comparison is :func:`pipeline.inspect.compare.compare_runs` with A = the other run
and B = this run (deltas are this run minus the other). McNemar's test needs both runs'
test predictions: this run's from its evaluation output, the other's from the evaluation
output its report recorded (:mod:`pipeline.inspect.lineage`), used only when that output
is still the one the report was made from and it verifies; otherwise the reason is kept.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.inspect.compare import METRIC_ORDER, PREDICTIONS_FILE

ROLES = ("previous", "best")
ROLE_NAMES = {("previous",): "the previous run", ("best",): "the best run so far",
              ("previous", "best"): "the previous run, also the best so far"}
METRIC_LABELS = {"test_accuracy": "test accuracy", "test_error_count": "test mistakes", "n_test": "test images",
                 "best_val_accuracy": "best validation accuracy", "ece": "calibration error (ECE)",
                 "epochs_run": "epochs run", "train_seconds": "training seconds"}
DEFINITIONS = {
    "previous": "the newest other run of this report directory rendered before this one",
    "best": "the run with the highest test accuracy among those (the earliest of equals)",
}


def other_runs(this: dict[str, Any], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs (metrics records) ``this`` is compared with: another run id, rendered no later; oldest first."""
    created = str(this.get("created", ""))
    others = [m for m in runs if m.get("run_id") != this.get("run_id") and str(m.get("created", "")) <= created]
    return sorted(others, key=lambda m: (str(m.get("created", "")), str(m.get("run_id", ""))))


def references(this: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{"previous": run, "best": run} among ``runs`` (metrics records) for the run ``this``; empty when
    there is no other run. Previous and best may be the same run."""
    by_time = other_runs(this, runs)
    if not by_time:
        return {}
    best = max(by_time, key=lambda m: float(m["test_accuracy"]))  # max keeps the first of equals: the earliest
    return {"previous": by_time[-1], "best": best}


def recorded_predictions(run: dict[str, Any], data_dir: str | os.PathLike | None
                         ) -> tuple[dict[str, Any] | None, str]:
    """(the test predictions ``run``'s report was made from, verified; or None) and, when None, why not.

    ``run`` is a record of :func:`pipeline.inspect.runs.load_runs` (it holds ``report_path``).
    """
    from pipeline import store
    from pipeline.inspect.lineage import lineage, nearest_holding

    if data_dir is None:
        return None, "no data directory was given to look for them in"
    used = lineage(run["report_path"], data_dir)
    if not used:
        return None, "its report's manifest records no inputs, so its evaluation output cannot be found"
    item = nearest_holding(used, PREDICTIONS_FILE)
    if item is None:
        return None, ("its evaluation output is no longer in the data directory (removed by gc or by hand); its "
                      f"command restores it: {run.get('rerun_command', 'see its report')}")
    if item.recorded_sha256 and item.recorded_sha256 != store.sha256_file(item.directory / store.MANIFEST_FILE):
        return None, (f"its evaluation output {item.directory.name} was rebuilt after its report was rendered, "
                      "so they may not be the predictions it reported")
    try:
        return store.read_verified_pickle(item.directory / PREDICTIONS_FILE), ""
    except store.IntegrityError as exc:
        return None, f"they fail verification ({exc})"


def compare_with_references(this: dict[str, Any], this_predictions: dict[str, Any] | None,
                            runs: list[dict[str, Any]], data_dir: str | os.PathLike | None
                            ) -> list[dict[str, Any]]:
    """This run against its previous and best runs (each run once), newest reference first.

    Each item is :func:`pipeline.inspect.compare.compare_runs` of (other, this) plus "roles"
    (["previous"], ["best"] or both), "other" (the other run's run_id, created, test_accuracy,
    test_accuracy_ci95, parameters) and "missing" (why McNemar's test was not run, or "").
    Only the metrics of :data:`pipeline.inspect.compare.METRIC_ORDER` are kept.
    """
    from pipeline.inspect.compare import compare_runs

    found = references(this, runs)
    out: list[dict[str, Any]] = []
    for role in ROLES:
        if role not in found:
            continue
        other = found[role]
        same = next((c for c in out if c["a"] == other["run_id"]), None)
        if same is not None:
            same["roles"].append(role)
            continue
        if this_predictions is None:
            pred, missing = None, "McNemar's test was not run: this run's evaluation holds no test predictions."
        else:
            pred, why = recorded_predictions(other, data_dir)
            missing = "" if pred is not None else (f"McNemar's test was not run: the test predictions of "
                                                   f"{other['run_id']} cannot be used: {why}.")
        try:
            result = compare_runs(other, this, pred, this_predictions if pred is not None else None,
                                  missing=missing)
        except ValueError as exc:  # the two runs scored different test sets
            missing = f"McNemar's test was not run: {exc}."
            result = compare_runs(other, this, None, None, missing=missing)
        result["metrics"] = [m for m in result["metrics"] if m["name"] in METRIC_ORDER]
        result["roles"] = [role]
        result["missing"] = missing if result["mcnemar"] is None else ""
        result["other"] = {k: other.get(k) for k in ("run_id", "created", "test_accuracy", "test_accuracy_ci95",
                                                      "parameters")}
        out.append(result)
    return out


def moment(created: str | None) -> str:
    """``2026-11-23 22:48:12 UTC`` from a record's ISO ``created`` (recorded in UTC)."""
    text = (created or "").replace("T", " ")
    return text[:-6] + " UTC" if text.endswith("+00:00") else text


def run_link(run_id: str, report_file: str) -> str:
    """The relative link from one run's page to another's: ``../<run id>/report.html``."""
    return f"../{run_id}/{report_file}"


def metric_text(name: str, value: Any, change: bool = False) -> str:
    """A metric's value as the tables show it (``99.44%``, ``103.2``); with ``change``, a signed
    difference (``+0.06 points``). Empty for a metric a run does not record."""
    if value is None:
        return ""
    sign = "+" if change else ""
    if name in ("test_accuracy", "best_val_accuracy"):
        return f"{100 * value:{sign}.2f}" + (" points" if change else "%")
    if name == "train_seconds":
        return f"{value:{sign}.1f}"
    if isinstance(value, float):
        return f"{value:{sign}.4f}"
    return f"{value:{sign},}"


def parameter_text(x: Any) -> str:
    """A parameter value as the command line writes it (``true``, ``0.002``); ``(default)`` when a run
    does not record it."""
    if x is None:
        return "(default)"
    return str(x).lower() if isinstance(x, bool) else str(x)


def p_text(p: float) -> str:
    """``p = 0.034``, or ``p < 0.001`` (smaller p-values say no more to a reader; the CLI's diff prints them)."""
    return f"p = {p:.2g}" if p >= 0.001 else "p < 0.001"


def significance(comparison: dict[str, Any]) -> str:
    """Whether the accuracy difference is significant by McNemar's test, or why it was not tested."""
    test = comparison["mcnemar"]
    if test is None:
        return comparison["missing"] or "McNemar's test was not run."
    if test["b"] == 0 and test["c"] == 0:
        return (f"The two runs are right and wrong on exactly the same of the {test['n_paired']:,} paired test "
                "images: there is no difference to test.")
    tested = (f"McNemar's test on {test['n_paired']:,} paired test images ({test['c']:,} right only in this run, "
              f"{test['b']:,} only in that one): {p_text(test['p_value'])}")
    if test["significant"]:
        return f"{tested}, significant at the {test['alpha']:g} level."
    return f"{tested}, not significant at the {test['alpha']:g} level: chance alone could explain it."


def comparison_tables(result: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The tables of one comparison as page table blocks: ([parameters that differ (when any), metrics],
    accuracy per digit or None when the two runs' predictions were not paired)."""
    import pandas as pd

    from pipeline.report.tables import table_block

    tables = []
    if result["parameters"]:
        frame = pd.DataFrame([[p["name"], parameter_text(p["a"]), parameter_text(p["b"])]
                              for p in result["parameters"]], columns=["parameter", "that run", "this run"])
        tables.append(table_block(frame, "Parameters that differ", text=True))
    shown = [m for m in result["metrics"] if not (m["name"] == "n_test" and m["delta"] == 0)]  # one test set: once
    frame = pd.DataFrame([[METRIC_LABELS.get(m["name"], m["name"].replace("_", " ")), metric_text(m["name"], m["a"]),
                           metric_text(m["name"], m["b"]), metric_text(m["name"], m["delta"], change=True)] for m in shown],
                         columns=["metric", "that run", "this run", "change"])
    tables.append(table_block(frame, "Metrics"))
    per_digit = None
    if result["per_class"]:
        frame = pd.DataFrame([[r["class"], f"{r['support']:,}", f"{100 * r['recall_a']:.2f}%",
                               f"{100 * r['recall_b']:.2f}%", f"{100 * r['recall_delta']:+.2f}"]
                              for r in result["per_class"]],
                             columns=["digit", "images", "that run", "this run", "change (points)"])
        per_digit = table_block(frame, "Accuracy per digit")  # recall; precision is in mnist-pipeline diff
    return tables, per_digit


def comparison_blocks(comparisons: list[dict[str, Any]], report_file: str) -> list[dict[str, Any]]:
    """What the comparison section shows of each comparison: {"roles", "name", "run_id", "href", "created",
    "significance" (a sentence), "mcnemar" (dict or None), "missing", "same_model", "tables", "per_digit"}
    (see :func:`comparison_tables`)."""
    blocks = []
    for c in comparisons:
        tables, per_digit = comparison_tables(c)
        blocks.append({"roles": c["roles"], "name": ROLE_NAMES[tuple(c["roles"])], "run_id": c["a"],
                       "href": run_link(c["a"], report_file), "created": moment(c["other"]["created"]),
                       "significance": significance(c), "mcnemar": c["mcnemar"], "missing": c["missing"],
                       "same_model": c["same_model"], "tables": tables, "per_digit": per_digit})
    return blocks


def load_predictions(evaluation_dir: str | os.PathLike) -> dict[str, Any] | None:
    """This run's test predictions from its evaluation output, verified (None if it holds none)."""
    from pipeline import store

    path = Path(evaluation_dir) / PREDICTIONS_FILE
    return store.read_verified_pickle(path) if path.exists() else None
