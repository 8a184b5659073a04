"""The Luigi side of the command: tasks built from flags or from a run's parameters, and their tree.

Flags are parsed by Luigi's own command-line parser, exactly as ``luigi --module
tasks <Task> ...`` parses them, so every flag the ``luigi`` command takes works
here too (``--storage-data-dir`` included) and nothing else does.
"""
from __future__ import annotations

import contextlib
import difflib
import io
from pathlib import Path
from typing import Any, Iterator

import luigi
from luigi.cmdline_parser import CmdlineParser

from tasks.cli.errors import UsageError


def families() -> list[str]:
    """The pipeline's task families (what ``show TASK`` and ``status`` accept)."""
    import tasks

    return list(tasks.__all__)


def stage_order() -> list[str]:
    """The stage folders of the data directory in pipeline order (the order of ``tasks.__all__``)."""
    stages = [getattr(luigi.task_register.Register.get_task_cls(f), "stage", "") for f in families()]
    return list(dict.fromkeys(s for s in stages if s))


def configure_storage(data_dir: str | None, report_dir: str | None) -> None:
    """Point ``[storage]`` at these directories for this process (None leaves luigi.cfg's value)."""
    config = luigi.configuration.get_config()
    for key, value in (("data_dir", data_dir), ("report_dir", report_dir)):
        if value is not None:
            if not config.has_section("storage"):
                config.add_section("storage")
            config.set("storage", key, str(value))


def storage_dirs() -> tuple[Path, Path]:
    """(data directory, report directory) as configured now."""
    from tasks.config import data_path, report_path

    return data_path(), report_path()


def _flag_hint(family: str, message: str) -> str:
    cls = luigi.task_register.Register.get_task_cls(family)
    flags = ["--" + name.replace("_", "-") for name, _ in cls.get_params()]
    unknown = [w for w in message.replace(",", " ").split() if w.startswith("--")]
    near = [m for w in unknown for m in difflib.get_close_matches(w, flags, n=2, cutoff=0.6)]
    hint = f" (did you mean {', '.join(dict.fromkeys(near))}?)" if near else ""
    return f"{message}{hint}. {family} takes: {' '.join(flags)}"


@contextlib.contextmanager
def task_from_flags(family: str, flags: list[str]) -> Iterator[luigi.Task]:
    """The task ``luigi --module tasks <family> <flags>`` would run; flags such as ``--storage-data-dir``
    apply inside the block. Raises :class:`UsageError` for an unknown task, flag or value."""
    known = families()
    if family not in known:
        near = difflib.get_close_matches(family, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise UsageError(f"no task {family!r}; {hint}tasks: {', '.join(known)}")
    captured = io.StringIO()
    manager = CmdlineParser.global_instance([family, *flags])
    try:
        with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
            parser = manager.__enter__()
    except SystemExit:
        errors = [line.split("error:", 1)[1].strip() for line in captured.getvalue().splitlines() if "error:" in line]
        raise UsageError(_flag_hint(family, errors[0] if errors else captured.getvalue().strip())) from None
    try:
        try:
            task = parser.get_task_obj()
            walk(task)  # the tasks it requires validate their parameters when built: fail here, not mid-way
        except (luigi.parameter.ParameterException, ValueError, KeyError) as exc:
            raise UsageError(f"{family}: {exc}") from None
        yield task
    finally:
        manager.__exit__(None, None, None)


def run_task(parameters: dict[str, Any]) -> luigi.Task:
    """``RunPipeline`` with a run's typed parameters (metrics.json's ``parameters``)."""
    from tasks.run import RunPipeline

    return build(RunPipeline, parameters)


def build(cls: type, parameters: dict[str, Any]) -> luigi.Task:
    """``cls(**parameters)`` keeping only the parameters ``cls`` takes; :class:`UsageError` when they no longer fit."""
    names = {name for name, _ in cls.get_params()}
    try:
        return cls(**{k: v for k, v in parameters.items() if k in names})
    except (luigi.parameter.ParameterException, ValueError) as exc:
        raise UsageError(f"cannot rebuild {cls.__name__} from the run's parameters with this checkout: {exc}") from None


def walk(task: luigi.Task) -> list[luigi.Task]:
    """Every task in ``task``'s tree, each once, in depth-first order."""
    from tasks.base import flatten

    seen: dict[str, luigi.Task] = {}

    def visit(t: luigi.Task) -> None:
        if t.task_id in seen:
            return
        seen[t.task_id] = t
        for dep in flatten(t.requires()):
            visit(dep)

    visit(task)
    return list(seen.values())


def output_dir(task: luigi.Task) -> Path | None:
    """The directory a task's output lives in (None for a task with no output directory of its own)."""
    return Path(task.output_dir()) if hasattr(task, "output_dir") else None


def used_dirs(runs: list[dict[str, Any]]) -> dict[Path, list[str]]:
    """{output directory: run ids} over every task of each run (metrics records): the directories its
    report's manifests recorded as inputs, and those its task tree names with today's code."""
    from pipeline.inspect.lineage import lineage

    data_dir, _ = storage_dirs()
    used: dict[Path, list[str]] = {}

    def use(directory: Path, run_id: str) -> None:
        if run_id not in used.setdefault(directory, []):
            used[directory].append(run_id)

    for run in runs:
        if run.get("report_path"):
            for item in lineage(run["report_path"], data_dir):
                use(item.directory, run["run_id"])
        for task in walk(run_task(run.get("parameters", {}))):
            directory = output_dir(task)
            if directory is not None:
                use(directory, run["run_id"])
    return used


def status_tree(root: luigi.Task) -> dict[str, Any]:
    """The tree of ``root`` as nodes of :mod:`pipeline.inspect.status` (each task's state computed once)."""
    from pipeline.inspect.status import classify, classify_wrapper
    from tasks.base import PipelineTask, flatten

    states: dict[str, tuple[str, list[str]]] = {}
    shown: set[str] = set()

    def state(task: luigi.Task, inputs: list[dict[str, Any]]) -> tuple[str, list[str]]:
        pairs = [(child["task"], child["status"]) for child in inputs]
        outputs = flatten(task.output())
        if isinstance(task, PipelineTask):
            own = task.stale_reasons()
            return classify(own, task.output_dir().exists(), pairs)
        if not outputs:
            return classify_wrapper(pairs)
        has_output = all(Path(t.path).exists() for t in outputs if hasattr(t, "path"))
        own = [] if task.complete() else ["its own completeness check fails (output incomplete or out of date)"]
        if own and any(s != "COMPLETE" for _, s in pairs):
            own = []  # the input explains it
        return classify(own, has_output, pairs)

    def node(task: luigi.Task) -> dict[str, Any]:
        repeat = task.task_id in shown
        shown.add(task.task_id)
        children = [node(dep) for dep in flatten(task.requires())] if not repeat else []
        if task.task_id not in states:
            states[task.task_id] = state(task, children)
        status, reasons = states[task.task_id]
        outputs = flatten(task.output())
        return {"task": task.task_family, "task_id": task.task_id, "status": status, "reasons": reasons,
                "output": str(output_dir(task) or (outputs[0].path if outputs else "")) or None,
                "params": task.to_str_params(only_significant=True), "requires": children, "repeat": repeat}

    return node(root)


def default_params() -> dict[str, dict[str, str]]:
    """{task family: {parameter: default in string form}} with luigi.cfg applied (what ``ls`` leaves out)."""
    out = {}
    for family in families():
        cls = luigi.task_register.Register.get_task_cls(family)
        params = cls.get_params()
        try:
            values = dict(cls.get_param_values(params, [], {}))
        except (luigi.parameter.ParameterException, ValueError):
            continue
        out[family] = {name: p.serialize(values[name]) for name, p in params if p.significant and name in values}
    return out
