"""Accuracy and time of a training configuration on a PrepareData pickle.

    python benchmarks/accuracy.py --data data/processed/<slug>/data.pkl --preset simple \
        --epochs 12 --schedule cosine [--augment] [--spec '[{"type": "conv", ...}]'] [--report-test] \
        [--ema-decay 0.999] [--label-smoothing 0.1] [--checkpoint-dir DIR]

Prints per-epoch validation loss/accuracy and seconds, and the best epoch. Choose
settings by the validation figures; ``--report-test`` prints the test accuracy of
the final (best-on-validation) model once, for the record, never for choosing.
Every field of :class:`pipeline.nn.TrainConfig` is a flag. ``benchmarks/recipes.py``
reuses the pieces below to compare several named candidates.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Any, Sequence

from pipeline import store
from pipeline.evaluate.ensemble import accuracy
from pipeline.nn import TrainConfig, preset_spec
from pipeline.progress import ProgressFn, throttled
from pipeline.train.stage import run_training


def _print(fraction: float, message: str) -> None:
    print(f"[{100 * fraction:5.1f}%] {message}", flush=True)


def progress_printer(every: float = 30.0) -> ProgressFn:
    """A progress line every ``every`` seconds, and one at the end of every epoch."""
    report = throttled(_print, every)
    return lambda fraction, message: report(fraction, message, force=" done" in message)


def load_data(path: str, limit: int = 0) -> dict[str, Any]:
    """A PrepareData pickle (verified against its manifest), its training split cut to the first
    ``limit`` images when ``limit`` > 0 (validation and test stay whole)."""
    data = dict(store.read_verified_pickle(path))
    if limit:
        data["x_train"], data["y_train"] = data["x_train"][:limit], data["y_train"][:limit]
    return data


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """A ``--field-name`` flag for every TrainConfig field, defaulting to the dataclass's default."""
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if str(field.type) == "bool":
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type={"int": int, "float": float, "str": str}[str(field.type)],
                                default=field.default)


def print_history(history: Sequence[dict]) -> None:
    """One line per epoch: rate, losses, validation accuracy, seconds, training speed."""
    for h in history:
        print(f"epoch {h['epoch']:3d} lr {h['lr']:.2e} train_loss {h['train_loss']:.4f} "
              f"val_loss {h['val_loss']:.4f} val_acc {h['val_acc']:.4f} {h['seconds']:6.1f}s "
              f"{h['images_per_second']:7.0f} img/s", flush=True)


def machine() -> str:
    """BLAS threads, CPUs and the load average: what a time on a shared machine depends on."""
    return (f"threads={os.environ.get('OPENBLAS_NUM_THREADS', 'default')} cpus={os.cpu_count()} "
            f"load={os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--preset", default="simple")
    parser.add_argument("--spec", default=None, help="a JSON model spec instead of a preset")
    parser.add_argument("--report-test", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="first N training images only")
    parser.add_argument("--checkpoint-dir", default=None, help="resume a long benchmark from here after a kill")
    add_config_flags(parser)
    args = parser.parse_args()
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    spec = json.loads(args.spec) if args.spec else preset_spec(args.preset)
    data = load_data(args.data, args.limit)
    print(f"# {args.preset if not args.spec else 'custom'} {config} {machine()}", flush=True)
    start = time.perf_counter()
    result = run_training(spec, data["x_train"], data["y_train"], data["x_val"], data["y_val"], config,
                          checkpoint_dir=args.checkpoint_dir, progress=progress_printer())
    wall = time.perf_counter() - start
    print_history(result.history)
    print(f"best epoch {result.best_epoch} val_acc {result.best_val_acc:.4f}; wall {wall:.1f}s; "
          f"load now {os.getloadavg()[0]:.2f}")
    if args.report_test:
        acc = accuracy(result.model.predict_proba(data["x_test"]), data["y_test"])
        n = len(data["y_test"])
        print(f"test accuracy {acc:.4f} ({int(round((1 - acc) * n))} errors of {n})")


if __name__ == "__main__":
    main()
