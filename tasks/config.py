"""Settings shared by every task, and the one place where paths and names are defined."""
from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import luigi


class storage(luigi.Config):  # noqa: N801 - Luigi names config sections after the class
    """Where results go: ``[storage]`` in luigi.cfg, or ``--storage-data-dir`` on the command line."""

    data_dir = luigi.Parameter(default="data", description="root of raw/, interim/, processed/, models/ ...")
    report_dir = luigi.Parameter(default="reports", description="where report folders are written")


def data_path(*parts: str) -> Path:
    """A path under the configured data directory."""
    return Path(storage().data_dir).joinpath(*parts)


def report_path(*parts: str) -> Path:
    """A path under the configured report directory."""
    return Path(storage().report_dir).joinpath(*parts)


SLUG_HASH_CHARS = 10  # of the parameter digest, in output directory names
RUN_ID_HASH_CHARS = 8  # of the parameter digest, in run ids


def run_name(preset: str, epochs: int, seed: int, train_limit: int = 0) -> str:
    """The readable part of a model's slug and of a run id: ``twoconv-e12-s42`` (``-n5000`` when limited)."""
    limit = f"-n{train_limit}" if train_limit else ""
    return f"{preset}-e{epochs}-s{seed}{limit}"


def slug(prefix: str, digest: str) -> str:
    """An output directory name: ``<prefix><first 10 hex digits of the parameter digest>``."""
    return f"{prefix}{digest[:SLUG_HASH_CHARS]}"


def run_id(name: str, digest: str) -> str:
    """A run id: ``<run name>-<first 8 hex digits of the parameter digest>``."""
    return f"{name}-{digest[:RUN_ID_HASH_CHARS]}"


def where_set(task: luigi.Task, message: str) -> str:
    """How to change the parameters of ``task`` that ``message`` names: their flags and luigi.cfg keys
    ("" when it names none). The section is the task's own, or that of the task the command runs, whose
    values are passed down (``[RunPipeline]``, ``[Nightly]``)."""
    # a whole word: "seed" is not named by the preset "seed-keras"
    names = [n for n in task.get_param_names() if re.search(rf"(?<![\w-]){n}(?![\w-])", message)]
    if not names:
        return ""
    flags = ", ".join(f"--{n.replace('_', '-')}" for n in names)
    keys = ", ".join(names)
    return (f"Fix: {flags} on the command line, or {keys} under [{task.task_family}] (or the section of the task "
            "you run, e.g. [RunPipeline] or [Nightly]) in luigi.cfg")


@contextmanager
def checking_settings(task: luigi.Task) -> Iterator[None]:
    """Checks of ``task``'s parameters run inside: a ValueError they raise is raised again with
    :func:`where_set` added, so the message names the flag to change."""
    try:
        yield
    except ValueError as exc:
        hint = where_set(task, str(exc))
        if not hint:
            raise
        raise ValueError(f"{exc}. {hint}") from None
