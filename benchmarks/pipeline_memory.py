"""Where the pipeline's peak memory is: run Luigi tasks in this process while a thread
samples the resident set size, and print the peak of each task with the code
that was running at that moment.

    python benchmarks/pipeline_memory.py --data-dir /tmp/memprobe              # the default run
    python benchmarks/pipeline_memory.py --data-dir /tmp/memprobe -- --epochs 1  # extra Luigi arguments

The figure to quote for the issue's bound is still the whole command under
``/usr/bin/time -v`` (its "Maximum resident set size"); this tool says which stage
and which line make it. With the local scheduler and one worker, Luigi runs
every task in this one process, so the run's peak is the largest task peak here.
Sampling every 10 ms can miss a spike shorter than that.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> int:
    """Current resident set size in MB, from /proc (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 >> 20


class Sampler(threading.Thread):
    """Samples RSS every ``interval`` seconds; keeps, per running task module, the peak and the stack there."""

    def __init__(self, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.main = threading.main_thread().ident
        self.peaks: dict[str, tuple[int, list[str]]] = {}

    def task_of(self, frame) -> str:
        """tasks/<module>.py of the task whose run() is on the stack, else "scheduling"."""
        while frame is not None:
            name = frame.f_code.co_filename
            if frame.f_code.co_name == "run" and f"{Path(name).parent.name}" == "tasks":
                return Path(name).stem
            frame = frame.f_back
        return "scheduling"

    def run(self) -> None:
        while True:
            mb = rss_mb()
            frame = sys._current_frames().get(self.main)
            key = self.task_of(frame)
            if mb > self.peaks.get(key, (0, []))[0]:
                stack = traceback.format_stack(frame)[-4:] if frame is not None else []
                self.peaks[key] = (mb, stack)
            time.sleep(self.interval)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True, help="storage data directory (use a fresh one to run every task)")
    ap.add_argument("--task", default="RunPipeline")
    ap.add_argument("luigi_args", nargs="*", help="more Luigi arguments, after --")
    args = ap.parse_args(argv)

    import luigi

    sys.path.insert(0, str(ROOT))
    sampler = Sampler()
    sampler.start()
    luigi.run(["--module", "tasks", args.task, "--local-scheduler", "--storage-data-dir", args.data_dir,
               "--storage-report-dir", str(Path(args.data_dir) / "reports"), *args.luigi_args],
              detailed_summary=False)
    time.sleep(3 * sampler.interval)
    print(f"peak RSS per task (MB), sampled every {sampler.interval * 1000:.0f} ms:")
    for key, (mb, stack) in sorted(sampler.peaks.items(), key=lambda kv: -kv[1][0]):
        print(f"\n{key}: {mb} MB, while running:")
        print("".join(stack).rstrip())


if __name__ == "__main__":
    main()
