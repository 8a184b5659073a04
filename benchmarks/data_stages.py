"""Seconds per data stage (CleanData, PrepareData, ExploreData) on the full MNIST.

    python benchmarks/data_stages.py [--repeats 3] [--train-limit 0] [--keep DIR]

Fetches from the bundled copy (data/mirror/mnist) into a temporary data
directory once, then runs each stage's ``run()`` ``--repeats`` times in this
process and prints the median wall time of each (the issue's target:
CleanData + ExploreData under 60 s together). It also prints what the audit
found, so the figure and the findings come from the same run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import luigi  # noqa: E402
import luigi.configuration  # noqa: E402


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

    from pipeline import store
    from tasks.data import CleanData
    from tasks.explore import ExploreData
    from tasks.acquire import FetchMNIST
    from tasks.data import PrepareData

    if not luigi.build([FetchMNIST()], local_scheduler=True, log_level="WARNING"):
        raise SystemExit("FetchMNIST failed: is data/mirror/mnist complete?")
    stages = [
        ("CleanData", CleanData()),
        ("PrepareData", PrepareData(train_limit=args.train_limit)),
        ("ExploreData", ExploreData(train_limit=args.train_limit)),
    ]
    for _, task in stages:
        # Outside a Luigi worker these scheduler callbacks are None; progress is not measured here.
        task.set_progress_percentage = lambda *_: None
        task.set_status_message = lambda *_: None
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

    report = store.read_json(stages[0][1].output_dir() / "clean_report.json")
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
