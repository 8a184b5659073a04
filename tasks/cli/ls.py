"""``mnist-pipeline ls``: every output under the data and report directories, with its integrity rehashed."""
from __future__ import annotations

import argparse

from tasks.cli.errors import INTEGRITY, OK
from tasks.cli.tasktree import default_params, stage_order, storage_dirs
from tasks.cli.text import emit, emit_json, human_bytes, table

HEADERS = ("STAGE", "NAME", "TASK", "KEY PARAMETERS", "CREATED", "SIZE", "INTEGRITY")


def _when(created: str) -> str:
    return created[:16].replace("T", " ") if created else "-"


def run(args: argparse.Namespace, flags: list[str]) -> int:
    from pipeline.inspect.errors import NotFound
    from pipeline.inspect.outputs import key_params, scan, sort_entries

    data_dir, report_dir = storage_dirs()
    if not data_dir.is_dir():
        raise NotFound(f"no data directory at {data_dir.resolve()}: run the pipeline first, or pass --data-dir "
                       "(the default is [storage] data_dir in luigi.cfg of the current directory)")
    entries = sort_entries(scan(data_dir, report_dir), stage_order())
    defaults = default_params()
    rows = []
    for e in entries:
        keys = key_params(e.params, defaults.get(e.task))
        rows.append({**e.to_dict(), "key_params": keys})
    failed = [e for e in entries if e.problems]
    if args.format == "json":
        emit_json({"data_dir": str(data_dir), "report_dir": str(report_dir), "entries": rows,
                   "bytes": sum(e.bytes for e in entries), "failed": len(failed)})
        return INTEGRITY if failed else OK
    print(f"data: {data_dir}   reports: {report_dir}")
    emit(table(HEADERS, [[e.stage, e.path.name if e.kind != "index" else "(index)", e.task or "-",
                          " ".join(f"{k}={v}" for k, v in sorted(r["key_params"].items())) or "-",
                          _when(e.created), human_bytes(e.bytes), e.integrity()] for e, r in zip(entries, rows)]))
    notes = [f"{e.kind} {e.path}: {e.note}" for e in entries if e.kind in ("debris", "checkpoints", "other")]
    emit(["", *notes] if notes else [])
    total = f"\n{len(entries)} entries, {human_bytes(sum(e.bytes for e in entries))}"
    if not failed:
        print(total + ", integrity ok")
        return OK
    print(total + f", {len(failed)} FAILED:")
    for e in failed:
        for problem in e.problems:
            print(f"  {e.path}: {problem}")
    print("A failed output is never loaded: delete its directory and rerun the pipeline, which rebuilds it.")
    return INTEGRITY
