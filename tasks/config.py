"""Settings shared by every task, and the one place where paths and names are defined."""
from __future__ import annotations

from pathlib import Path

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
