"""Test-only Luigi tasks for the retry tests: ``luigi --module flaky_tasks Flaky`` (with tests/ on PYTHONPATH).

``Flaky`` fails its first ``failures`` attempts, then succeeds; every attempt is one line in
``<state_dir>/attempts``, so a test can count how often the worker ran it.
"""
from __future__ import annotations

from pathlib import Path

import luigi

import tasks  # noqa: F401  (like every task of the project, these exit with its codes: tasks.luigi_config)


class TransientError(RuntimeError):
    """A failure that goes away when the task is tried again (a network blip, a busy disk)."""


class Flaky(luigi.Task):
    """Fail the first ``failures`` runs, then write ``<state_dir>/done``."""

    state_dir = luigi.Parameter(description="where attempts are counted and the output is written")
    failures = luigi.IntParameter(default=1, description="how many runs fail before one succeeds")

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(Path(self.state_dir) / "done"))

    def run(self):
        attempts = Path(self.state_dir) / "attempts"
        attempts.parent.mkdir(parents=True, exist_ok=True)
        with open(attempts, "a") as fh:
            fh.write("attempt\n")
        count = len(attempts.read_text().splitlines())
        if count <= self.failures:
            raise TransientError(f"transient failure {count} of {self.failures}")
        with self.output().open("w") as fh:
            fh.write(f"succeeded on attempt {count}\n")
