"""Accuracy and time of a training configuration on a PrepareData pickle.

    python benchmarks/accuracy.py --data data/processed/<slug>/data.pkl --preset simple \
        --epochs 12 --schedule cosine [--augment] [--spec '[{"type": "conv", ...}]'] [--report-test] \
        [--checkpoint-dir DIR]

Prints per-epoch validation loss/accuracy and seconds, and the best epoch. Choose
settings by the validation figures; ``--report-test`` prints the test accuracy of
the final (best-on-validation) model once, for the record, never for choosing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

from pipeline import store
from pipeline.nn import TrainConfig, preset_spec
from pipeline.progress import throttled
from pipeline.train.stage import run_training


def _print(fraction: float, message: str) -> None:
    print(f"[{100 * fraction:5.1f}%] {message}", flush=True)


def _progress(every: float = 30.0):
    """A progress line every ``every`` seconds, and one at the end of every epoch."""
    report = throttled(_print, every)
    return lambda fraction, message: report(fraction, message, force=" done" in message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--preset", default="simple")
    parser.add_argument("--spec", default=None, help="a JSON model spec instead of a preset")
    parser.add_argument("--report-test", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="first N training images only")
    parser.add_argument("--checkpoint-dir", default=None, help="resume a long benchmark from here after a kill")
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if str(field.type) == "bool":
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type={"int": int, "float": float, "str": str}[str(field.type)],
                                default=field.default)
    args = parser.parse_args()
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    spec = json.loads(args.spec) if args.spec else preset_spec(args.preset)
    data = store.read_verified_pickle(args.data)
    x, y = data["x_train"], data["y_train"]
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    print(f"# {args.preset if not args.spec else 'custom'} {config} threads={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}"
          f" cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}", flush=True)
    start = time.perf_counter()
    result = run_training(spec, x, y, data["x_val"], data["y_val"], config, checkpoint_dir=args.checkpoint_dir,
                          progress=_progress())
    wall = time.perf_counter() - start
    for h in result.history:
        print(f"epoch {h['epoch']:3d} lr {h['lr']:.2e} train_loss {h['train_loss']:.4f} "
              f"val_loss {h['val_loss']:.4f} val_acc {h['val_acc']:.4f} {h['seconds']:6.1f}s "
              f"{h['images_per_second']:7.0f} img/s")
    print(f"best epoch {result.best_epoch} val_acc {result.best_val_acc:.4f}; wall {wall:.1f}s; "
          f"load now {os.getloadavg()[0]:.2f}")
    if args.report_test:
        probs = result.model.predict_proba(data["x_test"])
        acc = float((probs.argmax(1) == data["y_test"]).mean())
        print(f"test accuracy {acc:.4f} ({int(round((1 - acc) * len(probs)))} errors of {len(probs)})")


if __name__ == "__main__":
    main()
