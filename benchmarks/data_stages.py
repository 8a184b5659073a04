"""Seconds per data stage (CleanData, PrepareData, ExploreData) on the full MNIST.

    python benchmarks/data_stages.py [--repeats 3] [--train-limit 0] [--keep DIR]

Fetches from the bundled copy (data/mirror/mnist) into a temporary data
directory once, then runs each stage's ``run()`` ``--repeats`` times in this
process and prints the median wall time of each (the target: CleanData +
ExploreData under 60 s together). It also prints what the audit found, so the
figure and the findings come from the same run. Needs the package installed
(``pip install -e .``).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import luigi
import luigi.configuration

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--keep", help="data directory to use and keep (default: a temporary one)")
    args = parser.parse_args()

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mnist-bench-"))
    config = luigi.configuration.get_config()
    config.set("storage", "data_dir", str(root))
    config.set("FetchMNIST", "mirrors", json.dumps([str(REPO / "data" / "mirror" / "mnist")]))

    from pipeline.result import read_result
    from tasks import CleanData, ExploreData, FetchMNIST, PrepareData

    if not luigi.build([FetchMNIST()], local_scheduler=True, log_level="WARNING"):
        raise SystemExit("fetching MNIST failed: is data/mirror/mnist complete?")
    stages = [
        ("CleanData", CleanData()),
        ("PrepareData", PrepareData(train_limit=args.train_limit)),
        ("ExploreData", ExploreData(train_limit=args.train_limit)),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in stages}
    for _ in range(args.repeats):
        for name, task in stages:
            start = time.perf_counter()
            task.run()  # reads its inputs, computes, writes its output directory
            times[name].append(time.perf_counter() - start)

    print(f"data dir: {root}   repeats: {args.repeats}   train_limit: {args.train_limit or 'all'}")
    for name, runs in times.items():
        print(f"{name:12s} median {statistics.median(runs):6.2f} s   runs: " + ", ".join(f"{t:.2f}" for t in runs))
    total = statistics.median(times["CleanData"]) + statistics.median(times["ExploreData"])
    print(f"{'Clean+Explore':12s} median {total:6.2f} s   (target < 60 s)")

    report = read_result(stages[0][1].output_dir())["summary"]
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print("findings on real MNIST:",
          f"duplicate copies train={report['duplicates']['train']['extra_copies']}",
          f"test={report['duplicates']['test']['extra_copies']},",
          f"train/test leakage pairs={report['leakage']['pairs']},",
          f"near-empty={report['flags']['train'].get('near_empty', 0)}+{report['flags']['test'].get('near_empty', 0)},",
          f"outliers (|z|>{report['settings']['z_threshold']:g})="
          f"{report['flags']['train'].get('outlier', 0)} train + {report['flags']['test'].get('outlier', 0)} test")


if __name__ == "__main__":
    main()
