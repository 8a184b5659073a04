"""What the tasks need from Luigi's configuration, wherever ``luigi`` runs.

Luigi reads its settings only from the files it finds: ``/etc/luigi/luigi.cfg``,
``luigi.cfg`` in the directory it runs in, and the files of ``$LUIGI_CONFIG_PATH``.
Two things go wrong when a cron line forgets to ``cd`` into the project:

* Luigi exits 0 after a failed task unless a ``[retcode]`` section says otherwise, so every
  failure would look like success. Importing :mod:`tasks` therefore sets Luigi's recommended
  exit codes (:data:`RECOMMENDED_EXIT_CODES`, the README's table) for each code no file sets;
  a file that sets one still wins.
* The project's settings (the mirrors of ``[FetchMNIST]``, ``[storage]``) are missing; the
  log then says which files were looked for and how to point Luigi at ``luigi.cfg``.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import luigi.configuration

log = logging.getLogger("luigi-interface")

# Luigi's documented recommendation (luigi/retcodes.py, "Luigi's exit codes" in its docs)
RECOMMENDED_EXIT_CODES = {"already_running": 10, "missing_data": 20, "not_run": 25, "task_failed": 30,
                          "scheduling_error": 35, "unhandled_exception": 40}
PROJECT_SECTION = "FetchMNIST"  # a section only the project's luigi.cfg has: its presence means the file was read


def apply_exit_codes(config: luigi.configuration.LuigiConfigParser | None = None) -> list[str]:
    """Set each of :data:`RECOMMENDED_EXIT_CODES` that no config file sets; return the names set."""
    config = config or luigi.configuration.get_config()
    if not config.has_section("retcode"):
        config.add_section("retcode")
    added = [name for name in RECOMMENDED_EXIT_CODES if not config.has_option("retcode", name)]
    for name in added:
        config.set("retcode", name, str(RECOMMENDED_EXIT_CODES[name]))
    return added


def missing_project_config(config: luigi.configuration.LuigiConfigParser | None = None) -> str:
    """Why the project's settings are missing and how to fix it; "" when ``luigi.cfg`` was read."""
    config = config or luigi.configuration.get_config()
    if config.has_section(PROJECT_SECTION):
        return ""
    paths = list(getattr(config, "_config_paths", []))  # Luigi keeps the list it reads, in order
    found = [p for p in paths if os.path.exists(p)]
    return (f"the project's luigi.cfg was not read (Luigi looked for {', '.join(paths) or 'no files'} from "
            f"{os.getcwd()}; found {', '.join(found) or 'none'}), so its settings ([{PROJECT_SECTION}] mirrors, "
            "[storage] directories) are missing. Fix: run it from the project directory (cd into it first, "
            "as the README's cron line does), or set LUIGI_CONFIG_PATH=/path/to/the/project/luigi.cfg")


def running_luigi(argv0: str | None = None) -> bool:
    """Whether this process is the ``luigi`` command (its console script or ``python -m luigi``)."""
    path = Path(argv0 if argv0 is not None else (sys.argv[0] if sys.argv else ""))
    return path.name == "luigi" or (path.name == "__main__.py" and path.parent.name == "luigi")


def check_configuration() -> None:
    """Apply the exit codes; under the ``luigi`` command, warn when the project's config file was not
    read (the ``mnist-pipeline`` CLI says so with its own errors instead: its ``--help`` needs no config)."""
    apply_exit_codes()
    problem = missing_project_config()
    if problem and running_luigi():
        log.warning("%s", problem)
