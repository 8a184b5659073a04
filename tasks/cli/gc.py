"""``mnist-pipeline gc [--keep N] [--reports] [--yes]``: remove what the newest N runs do not use."""
from __future__ import annotations

import argparse

from tasks.cli.errors import OK, UsageError
from tasks.cli.tasktree import stage_order, storage_dirs, used_dirs
from tasks.cli.text import emit, emit_json, human_bytes, table


def run(args: argparse.Namespace, flags: list[str]) -> int:
    from pipeline.inspect.errors import NotFound
    from pipeline.inspect.gc import execute, plan_gc
    from pipeline.inspect.outputs import scan, sort_entries
    from pipeline.inspect.runs import load_runs

    if args.keep < 0:
        raise UsageError(f"--keep must be 0 or more, got {args.keep}")
    data_dir, report_dir = storage_dirs()
    if not data_dir.is_dir():
        raise NotFound(f"no data directory at {data_dir.resolve()}: nothing to collect (pass --data-dir, or run "
                       "from the directory whose luigi.cfg names it)")
    runs, problems = load_runs(report_dir)
    kept = runs[len(runs) - args.keep:] if args.keep else []
    entries = sort_entries(scan(data_dir, report_dir, verify=False), stage_order())
    plan = plan_gc(entries, used_dirs(kept), [r["run_id"] for r in kept],
                   reports=args.reports)
    freed = execute(plan, data_dir, report_dir) if args.yes and plan.removals else 0
    if args.format == "json":
        emit_json({**plan.to_dict(), "removed": bool(args.yes), "freed": freed, "problems": problems})
        return OK
    for problem in problems:
        print(f"warning: a run is not counted: {problem}")
    print(f"Keeping the newest {len(kept)} of {len(runs)} run(s): {', '.join(r['run_id'] for r in kept) or 'none'}")
    if not plan.removals:
        print("Nothing to remove.")
        return OK
    verb = "Removed" if args.yes else "Would remove"
    print(f"{verb} {len(plan.removals)} entr{'y' if len(plan.removals) == 1 else 'ies'}, "
          f"{human_bytes(plan.bytes)} ({plan.bytes:,} bytes):")
    emit(table(("KIND", "STAGE", "NAME", "SIZE", "WHY"), [[d.entry.kind, d.entry.stage, d.entry.path.name,
                                                           human_bytes(d.entry.bytes), d.why]
                                                          for d in plan.removals], "  "))
    if not args.reports and any(d.entry.kind == "report" and not d.remove for d in plan.decisions) \
            and len(runs) > len(kept):
        print("Reports of older runs are kept (add --reports to remove them too).")
    if args.yes:
        print(f"Freed {human_bytes(freed)}.")
    else:
        print("Nothing was removed: run again with --yes to remove these.")
    return OK
