"""``mnist-pipeline status [luigi flags]``: the task tree of a run, each task COMPLETE, PENDING or STALE and why."""
from __future__ import annotations

import argparse

from tasks.cli.errors import OK
from tasks.cli.tasktree import status_tree, storage_dirs, task_from_flags
from tasks.cli.text import emit, emit_json


def run(args: argparse.Namespace, flags: list[str]) -> int:
    from pipeline.inspect.status import count, render_tree

    with task_from_flags(args.task, flags) as root:
        data_dir, report_dir = storage_dirs()
        tree = status_tree(root)
    counts = count(tree)
    if args.format == "json":
        emit_json({"data_dir": str(data_dir), "report_dir": str(report_dir), "counts": counts, "tree": tree})
        return OK
    if not data_dir.is_dir():
        print(f"(no data directory at {data_dir.resolve()}: nothing has run with these settings yet)")
    emit(render_tree(tree))
    print("\n" + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) + f"  (data: {data_dir}, "
          f"reports: {report_dir})")
    return OK
