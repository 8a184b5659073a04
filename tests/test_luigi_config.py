"""tasks.luigi_config: Luigi's recommended exit codes wherever luigi runs, and the missing-config warning."""
from __future__ import annotations

from luigi.configuration.cfg_parser import LuigiConfigParser

from tasks.luigi_config import RECOMMENDED_EXIT_CODES, apply_exit_codes, missing_project_config


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
