"""Settings shared by every task, and the one place where paths are defined."""
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
