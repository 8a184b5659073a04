"""tasks.luigi_config: Luigi's recommended exit codes wherever luigi runs, and the missing-config warning."""
from __future__ import annotations

from luigi.configuration.cfg_parser import LuigiConfigParser

from tasks.cli.errors import USAGE
from tasks.luigi_config import RECOMMENDED_EXIT_CODES, apply_exit_codes, missing_project_config, running_luigi


def test_recommended_codes_fill_only_what_no_config_file_sets(tmp_path):
    path = tmp_path / "site.cfg"
    path.write_text("[retcode]\ntask_failed = 7\n")
    config = LuigiConfigParser()
    config.read([str(path)])
    added = apply_exit_codes(config)
    assert "task_failed" not in added and set(added) == set(RECOMMENDED_EXIT_CODES) - {"task_failed"}
    assert config.getint("retcode", "task_failed") == 7
    assert config.getint("retcode", "scheduling_error") == 35 and config.getint("retcode", "already_running") == 10
    assert apply_exit_codes(config) == []  # a second call changes nothing


def test_missing_project_config_is_named_with_the_fix(tmp_path):
    empty = LuigiConfigParser()
    why = missing_project_config(empty)
    assert "the project's luigi.cfg was not read" in why and "LUIGI_CONFIG_PATH" in why
    project = tmp_path / "luigi.cfg"
    project.write_text('[FetchMNIST]\nmirrors = ["data/mirror/mnist"]\n')
    config = LuigiConfigParser()
    config.read([str(project)])
    assert missing_project_config(config) == ""


def test_the_warning_is_for_the_luigi_command_only():
    assert running_luigi("/srv/app/.venv/bin/luigi") and running_luigi("/usr/lib/python3/site-packages/luigi/__main__.py")
    assert not running_luigi("/usr/local/bin/mnist-pipeline") and not running_luigi("/usr/bin/pytest")
    assert not running_luigi("/srv/app/__main__.py")


def test_the_cli_outside_the_project_says_why_its_settings_are_missing(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    cli = "import sys; from tasks.cli import main; sys.exit(main())"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", cli, "status"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == USAGE, done.stderr
    assert "requires the 'mirrors' parameter" in done.stderr
    assert "note: the project's luigi.cfg was not read" in done.stderr and "LUIGI_CONFIG_PATH" in done.stderr
    helped = subprocess.run([sys.executable, "-c", cli, "--help"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert helped.returncode == 0 and "luigi.cfg" not in helped.stderr  # no warning where none is needed
