"""Accuracy of an ensemble against its size, from the probabilities its evaluation saved.

    python benchmarks/ensemble.py data/eval/<slug of an --ensemble K run>

Reads ``member_predictions.pkl`` (each member's test and validation probabilities) and
prints, for k = 1 … K, the accuracy of the mean of the first k members' probabilities on
the validation split (choose K by this column) and on the test split, with the test's 95%
Wilson interval; then each member alone. Nothing is trained: the figures are those of the
members the run trained, so a row for k equals ``--ensemble k`` of the same run.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pipeline  # noqa: F401  (before NumPy: picks OpenBLAS's kernels for this CPU, pipeline/blas.py)
import numpy as np

from pipeline import store
from pipeline.evaluate.ensemble import accuracy, average_probabilities
from pipeline.evaluate.metrics import wilson_interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eval_dir", type=Path, help="the output directory of an EvaluateCNN --ensemble K task")
    args = parser.parse_args()
    m = store.read_verified_pickle(args.eval_dir / "member_predictions.pkl")
    test, val, seeds = m["probabilities"], m["val_probabilities"], m["seeds"]
    labels, val_labels = m["labels"], m["val_labels"]
    n = len(labels)
    print(f"# {args.eval_dir}: {len(seeds)} members, seeds {', '.join(map(str, seeds))}; "
          f"{n} test and {len(val_labels)} validation images")
    print(f"{'members':>8} {'val acc':>8} {'test acc':>9} {'test 95% CI':>17} {'errors':>7}")
    for k in range(1, len(seeds) + 1):
        mean_test = average_probabilities(list(test[:k]))
        acc = accuracy(mean_test, labels)
        lo, hi = wilson_interval(round(acc * n), n)
        print(f"{k:>8} {100 * accuracy(average_probabilities(list(val[:k])), val_labels):>7.2f}% "
              f"{100 * acc:>8.2f}% {100 * lo:>7.2f}-{100 * hi:.2f}% {round((1 - acc) * n):>7}")
    print("\n  member   seed  val acc test acc")
    for i, seed in enumerate(seeds):
        print(f"{i:>8} {seed:>6} {100 * accuracy(val[i], val_labels):>7.2f}% {100 * accuracy(test[i], labels):>7.2f}%")
    print(f"\nmean member test accuracy {100 * np.mean([accuracy(p, labels) for p in test]):.2f}%")


if __name__ == "__main__":
    main()
