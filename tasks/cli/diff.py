"""``mnist-pipeline diff RUN_A RUN_B``: parameters, metrics with deltas, McNemar's test, per-class changes."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tasks.cli.errors import OK
from tasks.cli.tasktree import build, storage_dirs
from tasks.cli.text import emit, emit_json, table


def evaluation_dir(run: dict[str, Any]) -> tuple[Path, str]:
    """(the run's evaluation output directory, the sha256 its report recorded of that output's manifest).

    The nearest output the run's report was made from that holds test predictions, as the manifests
    recorded it; when none is there, the evaluation today's task tree names for the run's parameters."""
    from pipeline.inspect.compare import PREDICTIONS_FILE
    from pipeline.inspect.lineage import lineage, nearest_holding
    from tasks.evaluate import EvaluateCNN

    data_dir, _ = storage_dirs()
    item = nearest_holding(lineage(run["report_path"], data_dir), PREDICTIONS_FILE)
    if item is not None:
        return item.directory, item.recorded_sha256
    return build(EvaluateCNN, run.get("parameters", {})).output_dir(), ""


def predictions(run: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(the run's test predictions, verified; or None) and a note when they are missing or were rebuilt."""
    from pipeline import store
    from pipeline.inspect.compare import PREDICTIONS_FILE

    directory, recorded = evaluation_dir(run)
    path = directory / PREDICTIONS_FILE
    if not path.exists():
        return None, (f"the test predictions of {run['run_id']} are gone ({path} does not exist), so McNemar's test "
                      f"cannot be run; rebuild them with: {run.get('rerun_command', 'the run command')}")
    note = ""
    if recorded and recorded != store.sha256_file(directory / store.MANIFEST_FILE):
        note = (f"the evaluation of {run['run_id']} was rebuilt after its report was written: its predictions "
                "may differ from the report's numbers")
    return store.read_verified_pickle(path), note


def _value(x: Any) -> str:
    return "(default)" if x is None else str(x)  # a parameter a run does not record holds its default


def _num(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else f"{x:,}" if isinstance(x, int) else str(x)


def _signed(x: Any) -> str:
    return f"{x:+.4f}" if isinstance(x, float) else f"{x:+,}"


def run(args: argparse.Namespace, flags: list[str]) -> int:
    from pipeline.inspect.compare import compare_runs
    from pipeline.inspect.runs import load_runs, resolve_run

    _, report_dir = storage_dirs()
    runs, problems = load_runs(report_dir)
    a, b = resolve_run(runs, args.run_a), resolve_run(runs, args.run_b)
    pred_a, note_a = predictions(a)
    pred_b, note_b = predictions(b)
    missing = " ".join(n for n, p in ((note_a, pred_a), (note_b, pred_b)) if p is None)
    from tasks.run import RunPipeline

    result = compare_runs(a, b, pred_a, pred_b, missing=missing, alpha=args.alpha,
                          parameter_names={name for name, _ in RunPipeline.get_params()})
    result["notes"] = [n for n in (note_a, note_b) if n] + problems
    result["created"] = {"a": a.get("created"), "b": b.get("created")}
    if args.format == "json":
        emit_json(result)
        return OK
    print(f"A: {a['run_id']}  ({a.get('created', '?')})")
    print(f"B: {b['run_id']}  ({b.get('created', '?')})")
    print("same trained model (params_sha256)" if result["same_model"] else "different trained models")
    print("\nParameters that differ:" if result["parameters"] else "\nParameters: identical")
    emit(table(("PARAMETER", "A", "B"), [[p["name"], _value(p["a"]), _value(p["b"])] for p in result["parameters"]],
               "  ")
         if result["parameters"] else [])
    print("\nMetrics:")
    emit(table(("METRIC", "A", "B", "B - A"),
               [[m["name"], _num(m["a"]), _num(m["b"]), _signed(m["delta"])] for m in result["metrics"]], "  "))
    test = result["mcnemar"]
    if test is not None:
        stat = f", statistic {test['statistic']:.3f}" if test["statistic"] is not None else ""
        print(f"\nMcNemar's test on {test['n_paired']:,} paired test images ({test['method']}): "
              f"A right & B wrong {test['b']:,}, A wrong & B right {test['c']:,}{stat}, p = {test['p_value']:.4g}")
    print(f"Verdict: {result['verdict']}")
    if result["per_class"]:
        print("\nPer class (recall = accuracy on the class):")
        emit(table(("CLASS", "SUPPORT", "RECALL A", "RECALL B", "B - A", "PRECISION A", "PRECISION B", "B - A"),
                   [[r["class"], r["support"], f"{r['recall_a']:.4f}", f"{r['recall_b']:.4f}",
                     f"{r['recall_delta']:+.4f}", f"{r['precision_a']:.4f}", f"{r['precision_b']:.4f}",
                     f"{r['precision_delta']:+.4f}"] for r in result["per_class"]], "  "))
    emit(["", *[f"note: {n}" for n in result["notes"]]] if result["notes"] else [])
    return OK
