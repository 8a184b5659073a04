"""Artifacts you can trust, end to end: the real `luigi` command on a copy of this checkout.

- a tampered pickle whose payload would create a file is refused, the file never appears,
  and the exit code is non-zero;
- a semantic edit of the normalization code reruns PrepareData and what is downstream of it,
  nothing upstream; a comment-only edit of it, or a README edit, reruns nothing;
- the rerun_command recorded in metrics.json reproduces the run's params_sha256 from scratch,
  for a run with a boolean set to false and a non-default float, and for an ensemble trained by two
  workers even when rerun with one (it pins the BLAS thread count the members trained on).
"""
from __future__ import annotations

import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

SMALL = ["--train-limit", "1000", "--epochs", "1", "--preset", "simple", "--seed", "5"]
STAGES = ("interim", "processed", "explore", "models", "eval")


class Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _checkout_copy(root: Path) -> Path:
    """The code of this checkout in ``root/code`` (the bundled MNIST linked, not copied)."""
    code = root / "code"
    for part in ("pipeline", "tasks"):
        shutil.copytree(REPO / part, code / part, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("luigi.cfg", "README.md"):
        shutil.copy(REPO / name, code / name)
    (code / "data").mkdir()
    (code / "data" / "mirror").symlink_to(REPO / "data" / "mirror")
    return code


def _luigi(code: Path, root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(code)}  # the copy's packages come before the installed ones
    cmd = ["luigi", "--module", "tasks", "RunPipeline", "--local-scheduler", *args,
           "--storage-data-dir", str(root / "data"), "--storage-report-dir", str(root / "reports")]
    return subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True, timeout=600)


def _stamps(root: Path) -> dict[str, int]:
    """{stage: mtime of its manifest}: which outputs a run rewrote."""
    stamps = {"raw": (root / "data" / "raw" / "mnist" / "manifest.json").stat().st_mtime_ns}
    for stage in STAGES:
        (manifest,) = (root / "data" / stage).glob("*/manifest.json")
        stamps[stage] = manifest.stat().st_mtime_ns
    (report,) = [p for p in (root / "reports").glob("*/manifest.json") if not p.parent.is_symlink()]
    stamps["report"] = report.stat().st_mtime_ns
    return stamps


def _rerun(before: dict[str, int], after: dict[str, int]) -> list[str]:
    return [stage for stage in before if before[stage] != after[stage]]


@pytest.fixture(scope="module")
def copied_run(tmp_path_factory, mnist_dir):
    root = tmp_path_factory.mktemp("trust")
    code = _checkout_copy(root)
    done = _luigi(code, root, *SMALL)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, code


def test_comment_and_readme_edits_rerun_nothing_a_semantic_edit_reruns_downstream_only(copied_run):
    root, code = copied_run
    normalize = code / "pipeline" / "data" / "normalize.py"
    before = _stamps(root)

    (code / "README.md").write_text((code / "README.md").read_text() + "\nAn edit of the README.\n")
    source = normalize.read_text()
    normalize.write_text("# a comment-only edit\n" + source.replace('"""', '"""  ', 1) + "\n\n# trailing\n")
    done = _luigi(code, root, *SMALL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Did not run any tasks" in done.stderr or "complete ones were encountered" in done.stderr
    assert _rerun(before, _stamps(root)) == []

    # a semantic edit: the same numbers (so the test stays fast and deterministic), different code
    normalize.write_text(source + "\n\ndef _unused_helper(x):\n    return x + 1\n")
    done = _luigi(code, root, *SMALL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "changed code: pipeline.data.normalize" in done.stderr  # the stale reason is logged
    assert _rerun(before, _stamps(root)) == ["processed", "explore", "models", "eval", "report"]


def test_a_tampered_pickle_is_refused_and_its_payload_never_runs(copied_run, tmp_path):
    root, code = copied_run
    (data_pkl,) = (root / "data" / "processed").glob("*/data.pkl")
    marker = tmp_path / "payload-ran"
    # what an attacker with write access to data/ would do: same keys, one extra object
    data = pickle.loads(data_pkl.read_bytes())
    data["extra"] = Payload(str(marker))
    data_pkl.write_bytes(pickle.dumps(data))
    (model_manifest,) = (root / "data" / "models").glob("*/manifest.json")
    model_manifest.unlink()  # the model must be trained again, so the tampered data gets loaded

    done = _luigi(code, root, *SMALL)
    assert done.returncode == 30, done.stderr[-3000:]  # [retcode] task_failed
    assert f"{data_pkl} was changed after it was written" in done.stderr
    assert "delete" in done.stderr and "rerun" in done.stderr
    assert not marker.exists()


def test_rerun_command_reproduces_params_sha256_from_scratch(mnist_dir, tmp_path):
    args = ["--train-limit", "1000", "--epochs", "1", "--preset", "simple", "--seed", "9",
            "--augment", "false", "--learning-rate", "0.0031", "--val-fraction", "0.15"]
    first = tmp_path / "first"
    done = subprocess.run(["luigi", "--module", "tasks", "RunPipeline", "--local-scheduler", *args,
                           "--storage-data-dir", str(first / "data"), "--storage-report-dir", str(first / "reports")],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (metrics_path,) = [p for p in (first / "reports").glob("*/metrics.json") if not p.parent.is_symlink()]
    metrics = json.loads(metrics_path.read_text())
    command = shlex.split(metrics["rerun_command"])
    assert command[command.index("--augment") + 1] == "false"
    assert metrics["parameters"]["augment"] is False and metrics["parameters"]["learning_rate"] == 0.0031

    second = tmp_path / "second"  # from scratch: nothing of the first run is reused
    done = subprocess.run(command + ["--storage-data-dir", str(second / "data"),
                                     "--storage-report-dir", str(second / "reports")],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (again_path,) = [p for p in (second / "reports").glob("*/metrics.json") if not p.parent.is_symlink()]
    again = json.loads(again_path.read_text())
    assert again["run_id"] == metrics["run_id"]
    assert again["params_sha256"] == metrics["params_sha256"]
    assert again["parameters"] == metrics["parameters"]



def test_rerun_command_of_a_two_worker_ensemble_trains_the_same_members_with_one_worker(mnist_dir, tmp_path):
    """The Quick start's shape. Two workers on this machine's cores train each member on its share of them
    (tasks/cores.py); one worker would give a member every core, and the engine's kernels, so its bits,
    depend on that. The recorded command pins the thread count, so even run with one worker it trains
    the very same members."""
    def run(command: list[str], root: Path) -> dict:
        done = subprocess.run(command + ["--storage-data-dir", str(root / "data"),
                                         "--storage-report-dir", str(root / "reports")],
                              cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        (path,) = [p for p in (root / "reports").glob("*/metrics.json") if not p.parent.is_symlink()]
        return json.loads(path.read_text())

    metrics = run(["luigi", "--module", "tasks", "RunPipeline", "--local-scheduler", *SMALL,
                   "--ensemble", "2", "--workers", "2"], tmp_path / "first")
    command = shlex.split(metrics["rerun_command"])
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert command[:3] == ["env", f"OPENBLAS_NUM_THREADS={share}", "luigi"]
    workers = command.index("--workers")
    assert command[workers + 1] == "2"
    del command[workers:workers + 2]  # one worker
    again = run(command, tmp_path / "second")  # from scratch
    assert again["run_id"] == metrics["run_id"]
    assert [m["params_sha256"] for m in again["members"]] == [m["params_sha256"] for m in metrics["members"]]
    assert again["params_sha256"] == metrics["params_sha256"]
