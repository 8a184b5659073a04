"""``mnist-pipeline show PATH|TASK [--key K] [--export FILE]``: what a file holds, verified before it is read."""
from __future__ import annotations

import argparse
import difflib
from pathlib import Path

from tasks.cli.errors import OK, UsageError
from tasks.cli.tasktree import families, storage_dirs, task_from_flags
from tasks.cli.text import emit


def target_path(target: str, flags: list[str], file: str | None) -> Path:
    """The file ``target`` names: a path (as given, or under the data or report directory), or the
    primary output (or ``file``) of the task ``target`` built from ``flags``."""
    from pipeline.inspect.errors import NotFound

    if target in families():
        with task_from_flags(target, flags) as task:
            if not task.output():
                raise UsageError(f"{target} has no output of its own; show one of the tasks it requires")
            primary = Path(task.output().path)
            path = primary.parent / file if file else primary
        if not path.exists():
            raise NotFound(f"{target} with these parameters has no output yet: {path} does not exist "
                           "(`mnist-pipeline status` shows what would run)")
        return path
    if flags:
        raise UsageError(f"unrecognized arguments {' '.join(flags)}: task flags go with a TASK, not a path")
    data_dir, report_dir = storage_dirs()
    for candidate in (Path(target), data_dir / target, report_dir / target):
        if candidate.exists():
            return candidate / file if file else candidate
    near = difflib.get_close_matches(target, families(), n=3, cutoff=0.5)
    found = sorted(str(p) for p in data_dir.glob(f"*/*/{Path(target).name}"))[:5] if data_dir.is_dir() else []
    if found:
        hint = f"; files of that name: {', '.join(found)}"
    else:
        hint = f"; did you mean the task {', '.join(near)}?" if near else f"; tasks: {', '.join(families())}"
    raise NotFound(f"no file {target} (looked in {Path.cwd()}, {data_dir.resolve()} and {report_dir.resolve()}) "
                   f"and no task of that name{hint}")


def run(args: argparse.Namespace, flags: list[str]) -> int:
    from pipeline.inspect import artifacts
    from pipeline.inspect.describe import describe, pretty_json
    from pipeline.inspect.export import export
    from pipeline.inspect.select import pick

    path = target_path(args.target, flags, args.file)
    _, report_dir = storage_dirs()
    art = artifacts.open_artifact(path, report_dir)
    obj = pick(art.obj, args.key)
    where = f"{path}" + (f" [{args.key}]" if args.key else "")
    if args.export:
        done = export(obj, args.export, name=(args.key or "").replace(".", "_"))
        print(f"{where}: wrote {done['path']} ({done['format']}: {', '.join(done['written'])})")
        if done["skipped"]:
            print(f"not written (not arrays): {', '.join(done['skipped'])}")
        return OK
    print(f"{where}  ({art.check})")
    if art.kind == artifacts.TEXT and isinstance(obj, str):
        print(obj.rstrip("\n"))
    elif art.kind == artifacts.JSON and (args.key is None or isinstance(obj, (dict, list, str, int, float, bool))):
        print(pretty_json(obj))
    else:
        emit(describe(obj))
    return OK
