"""Training-recipe candidates on the real prepared data: accuracy and time of each, and a table.

    python benchmarks/recipes.py                                  # every candidate below, seed 42
    python benchmarks/recipes.py --candidates default,ema,tta --seed 1,2,3
    python benchmarks/recipes.py --train-limit 5000 --epochs 2    # a quick check that all of it runs
    python benchmarks/recipes.py --add 'strong20={"preset": "strong", "config": {"epochs": 20}, "tta": 1}'
    python benchmarks/recipes.py --data data/processed/<slug>/data.pkl --candidates default

A candidate (:data:`CANDIDATES`) is a model (a preset name or a spec), changes to the training
configuration of the pipeline's default run (``TrainCNN``'s parameters: the README command), and a
test-time augmentation level. Without ``--data``, the data are built per seed exactly as
``PrepareData`` builds them (the same pipeline functions, the task's defaults, the seed drawing the
split, ``--train-limit`` applied before the split), so the ``default`` candidate at seed 42 is the
README run's model, bit for bit (its params_sha256 is printed). With ``--data``, the pickle's split
is used and ``--train-limit`` keeps its first N training images.

Per candidate it prints the per-epoch history, then the best validation accuracy (with and without
TTA when the candidate uses it: choose by these), the test accuracy (reported, never for choosing),
epochs, training and evaluation seconds and training images per second; at the end, one Markdown
table. Times depend on the machine's load, which is printed with each candidate.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Any

from accuracy import load_data, machine, print_history, progress_printer  # benchmarks/accuracy.py

from pipeline.evaluate.ensemble import accuracy
from pipeline.evaluate.tta import predict, views
from pipeline.nn import TrainConfig, preset_spec
from pipeline.train.stage import run_training

# twoconv made wider: 24/48 filters, dense 128 (about twice its multiply-adds)
WIDE = [
    {"type": "conv", "filters": 24, "kernel": 5, "stride": 1, "pad": 0, "init": "he"},
    {"type": "relu"},
    {"type": "maxpool", "size": 2, "stride": 2},
    {"type": "conv", "filters": 48, "kernel": 5, "stride": 1, "pad": 0, "init": "he"},
    {"type": "relu"},
    {"type": "maxpool", "size": 2, "stride": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 128, "init": "he"},
    {"type": "relu"},
    {"type": "dense", "units": 10, "init": "he"},
]
# 3x3 convolutions stacked, with BatchNorm, at about twoconv's multiply-adds per image
# (1.25 M against 1.10 M: 28 -> 26 -> 24 -> pool 12 -> 10 -> pool 5, then 800 -> 100 -> 10)
BN3X3 = [
    {"type": "conv", "filters": 8, "kernel": 3, "stride": 1, "pad": 0, "init": "he"},
    {"type": "relu"},
    {"type": "conv", "filters": 16, "kernel": 3, "stride": 1, "pad": 0, "init": "he"},
    {"type": "batchnorm"},
    {"type": "relu"},
    {"type": "maxpool", "size": 2, "stride": 2},
    {"type": "conv", "filters": 32, "kernel": 3, "stride": 1, "pad": 0, "init": "he"},
    {"type": "batchnorm"},
    {"type": "relu"},
    {"type": "maxpool", "size": 2, "stride": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 100, "init": "he"},
    {"type": "relu"},
    {"type": "dense", "units": 10, "init": "he"},
]
RECIPE = {"ema_decay": 0.999, "label_smoothing": 0.1, "schedule": "onecycle", "warmup_epochs": 0.5}


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A model (``preset``, or ``spec`` when given, called ``model``), TrainConfig changes and a TTA level."""

    preset: str | None = None  # None: the default run's preset
    spec: list[dict] | None = None
    model: str = "custom"  # what the table calls a ``spec``
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    tta: int = 0


CANDIDATES: dict[str, Candidate] = {
    "default": Candidate(),  # the README run (label smoothing 0.1 since 2026-11-23)
    "no-smoothing": Candidate(config={"label_smoothing": 0.0}),  # the default run before that
    "ema": Candidate(config={"ema_decay": 0.999}),
    "smooth": Candidate(config={"label_smoothing": 0.1}),
    "onecycle": Candidate(config={"schedule": "onecycle", "warmup_epochs": 0.5}),
    "tta": Candidate(tta=1),
    "combined": Candidate(config=RECIPE, tta=1),
    "wide": Candidate(spec=WIDE, model="wide 24/48/128"),
    "wide-combined": Candidate(spec=WIDE, model="wide 24/48/128", config=RECIPE, tta=1),
    "bn3x3": Candidate(spec=BN3X3, model="3x3 BN 8/16/32"),
    "bn3x3-combined": Candidate(spec=BN3X3, model="3x3 BN 8/16/32", config=RECIPE, tta=1),
}


def default_run(seed: int, train_limit: int):
    """The pipeline's default run at ``seed``: (preset, TrainConfig, PrepareData settings), from the
    task's own parameters, so this benchmark's ``default`` is whatever the README command runs."""
    from tasks.train import TrainCNN

    task = TrainCNN(seed=seed, train_limit=train_limit)
    data = {"clean_policy": task.clean_policy, "val_fraction": task.val_fraction,
            "normalization": task.normalization, "train_limit": task.train_limit, "seed": task.seed}
    return task.preset, task.train_config(), data


def build_data(raw_dir: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The prepared splits, made as CleanData and PrepareData make them (``settings``: theirs)."""
    from pipeline.data.clean_stage import clean_stage
    from pipeline.data.prepare import prepare_stage

    cleaned = clean_stage(raw_dir, settings["clean_policy"]).artifacts["cleaned"]
    return prepare_stage(cleaned, settings["seed"], settings["val_fraction"], settings["normalization"],
                         settings["train_limit"]).artifacts["data"]


def run_candidate(name: str, candidate: Candidate, preset: str, base: TrainConfig, data: dict[str, Any],
                  epochs: int | None) -> dict[str, Any]:
    """Train and score one candidate; print its history and one summary line; return its table row."""
    changes = dict(candidate.config, **({"epochs": epochs} if epochs else {}))
    config = dataclasses.replace(base, **changes)
    model_name = candidate.model if candidate.spec else (candidate.preset or preset)
    spec = candidate.spec or preset_spec(candidate.preset or preset)
    print(f"\n## {name} (seed {config.seed}): {model_name}, {changes or 'default settings'}, tta {candidate.tta}; "
          f"{len(data['y_train'])} train / {len(data['y_val'])} val images; {machine()}", flush=True)
    result = run_training(spec, data["x_train"], data["y_train"], data["x_val"], data["y_val"], config,
                          progress=progress_printer())
    print_history(result.history)
    start = time.perf_counter()
    val, val_plain = predict(result.model, data["x_val"], candidate.tta)
    test, test_plain = predict(result.model, data["x_test"], candidate.tta)
    eval_seconds = time.perf_counter() - start
    row = {"candidate": name, "seed": config.seed, "model": model_name, "params": result.model.num_params(),
           "best_epoch": result.best_epoch, "epochs_run": len(result.history),
           "val_acc": accuracy(val_plain, data["y_val"]),
           "val_acc_tta": accuracy(val, data["y_val"]) if candidate.tta else None,
           "test_acc": accuracy(test, data["y_test"]), "test_acc_plain": accuracy(test_plain, data["y_test"]),
           "train_seconds": result.train_seconds, "eval_seconds": eval_seconds,
           "images_per_second": result.images_per_second, "views": len(views(candidate.tta)),
           "params_sha256": result.params_sha256}
    tta = (f" (with TTA, {row['views']} views: {100 * row['val_acc_tta']:.2f}%)" if candidate.tta else "")
    plain = f", {100 * row['test_acc_plain']:.2f}% without TTA" if candidate.tta else ""
    print(f"-> {name}: best epoch {row['best_epoch']}/{row['epochs_run']}, validation {100 * row['val_acc']:.2f}%"
          f"{tta}; test {100 * row['test_acc']:.2f}%{plain} (reported, not for choosing); "
          f"train {row['train_seconds']:.1f} s, eval {eval_seconds:.1f} s, {row['images_per_second']:.0f} img/s; "
          f"params_sha256 {result.params_sha256[:16]}; load now {os.getloadavg()[0]:.2f}", flush=True)
    return row


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, in the order run."""
    head = ("| candidate | seed | model | params | best/run epochs | val acc | val acc TTA | test acc | "
            "train s | eval s | img/s | params_sha256 |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        lines.append(f"| {r['candidate']} | {r['seed']} | {r['model']} | {r['params']:,} | "
                     f"{r['best_epoch']}/{r['epochs_run']} | {_pct(r['val_acc'])} | {_pct(r['val_acc_tta'])} | "
                     f"{_pct(r['test_acc'])} | {r['train_seconds']:.1f} | {r['eval_seconds']:.1f} | "
                     f"{r['images_per_second']:.0f} | {r['params_sha256'][:12]} |")
    return "\n".join(lines)


def _candidate(text: str) -> tuple[str, Candidate]:
    """``NAME=JSON`` (the JSON: Candidate's fields) -> (name, candidate)."""
    name, _, spec = text.partition("=")
    try:
        return name, Candidate(**json.loads(spec))
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"--add wants NAME=JSON with keys preset, spec, model, config, tta: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help=f"comma-separated names, of: {', '.join(CANDIDATES)} (default: all)")
    parser.add_argument("--add", type=_candidate, action="append", default=[], metavar="NAME=JSON",
                        help="another candidate, e.g. 'big={\"preset\": \"strong\", \"tta\": 1}'; it runs too")
    parser.add_argument("--seed", default="42", help="seed of the split and of training; several: 1,2,3")
    parser.add_argument("--epochs", type=int, default=None, help="override every candidate's epochs")
    parser.add_argument("--train-limit", type=int, default=0, help="first N training images only (quick checks)")
    parser.add_argument("--data", default=None, help="a PrepareData pickle instead of building the data")
    parser.add_argument("--raw-dir", default="data/mirror/mnist", help="the MNIST .gz files to build the data from")
    args = parser.parse_args()
    names = [n for n in args.candidates.split(",") if n]
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        parser.error(f"unknown candidates {unknown}; choose from {', '.join(CANDIDATES)}")
    chosen = [(n, CANDIDATES[n]) for n in names] + args.add
    rows = []
    for seed in (int(s) for s in args.seed.split(",")):
        preset, base, settings = default_run(seed, 0 if args.data else args.train_limit)
        start = time.perf_counter()
        data = load_data(args.data, args.train_limit) if args.data else build_data(args.raw_dir, settings)
        print(f"# seed {seed}: data {'from ' + args.data if args.data else settings} in "
              f"{time.perf_counter() - start:.1f} s; default run: {preset}, {base}", flush=True)
        for name, candidate in chosen:
            rows.append(run_candidate(name, candidate, preset, base, data, args.epochs))
    print("\n" + markdown_table(rows))


if __name__ == "__main__":
    main()
