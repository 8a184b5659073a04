"""The pipeline under a real central scheduler (luigid), with two workers racing on it."""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def luigid(tmp_path):
    """A real luigid on 127.0.0.1; yields its port."""
    exe = shutil.which("luigid")
    if exe is None:
        pytest.skip("luigid is not on PATH (it comes with `pip install luigi`)")
    port = _free_port()
    (tmp_path / "luigid-log").mkdir()
    proc = subprocess.Popen(
        [exe, "--address", "127.0.0.1", "--port", str(port), "--logdir", str(tmp_path / "luigid-log"),
         "--state-path", str(tmp_path / "luigid-state.pickle")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/task_list", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"luigid exited with {proc.returncode}; see {tmp_path / 'luigid-log'}")
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("luigid did not start within 30 s")
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def _scheduler_tasks(port: int, status: str) -> dict:
    query = json.dumps({"status": status, "upstream_status": "", "search": ""})
    url = f"http://127.0.0.1:{port}/api/task_list?data={urllib.request.quote(query)}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)["response"]


def _ran_here(output: str) -> list[str]:
    """Task families this worker process ran to completion (its 'done' log lines)."""
    return re.findall(r"\) done\s+(\w+)\(", output)


def test_two_workers_share_one_pipeline_through_luigid(luigid, tmp_path):
    cmd = [sys.executable, "-m", "luigi", "--module", "tasks", "RunPipeline",
           "--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid),
           "--storage-data-dir", str(tmp_path / "data"), "--storage-report-dir", str(tmp_path / "reports"),
           "--train-limit", "1000", "--epochs", "1", "--seed", "3",
           "--no-lock"]  # luigi's per-machine lock would otherwise stop the second process at once
    workers = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    # With [retcode] set, a worker that found a task being run by the other worker exits with
    # already_running (10), Luigi's documented signal; anything else would be a failure.
    assert all(w.returncode in (0, 10) for w in workers), outputs

    done = _scheduler_tasks(luigid, "DONE")
    families = {t["name"] for t in done.values()}
    assert {"FetchMNIST", "CleanData", "PrepareData", "ExploreData", "TrainCNN",
            "EvaluateCNN", "RenderReport", "RunIndex", "RunPipeline"} <= families
    assert _scheduler_tasks(luigid, "FAILED") == {}
    # Progress reached the scheduler (what luigid's web page shows while a task runs).
    by_name = {t["name"]: t for t in done.values()}
    for name in ("FetchMNIST", "CleanData", "ExploreData", "TrainCNN", "EvaluateCNN"):
        assert by_name[name]["progress_percentage"] == 100, name
    assert by_name["TrainCNN"]["status_message"].startswith("epoch 1/1 done: loss")
    assert by_name["FetchMNIST"]["status_message"].startswith("verified: ")

    # The scheduler hands each task to one worker: no task ran in both processes.
    first, second = (_ran_here(o) for o in outputs)
    assert sorted(first + second) == sorted(["FetchMNIST", "CleanData", "PrepareData", "ExploreData",
                                             "TrainCNN", "EvaluateCNN", "RenderReport", "RunIndex",
                                             "RunPipeline"])
    reports = [p for p in (tmp_path / "reports").glob("*/report.html") if not p.parent.is_symlink()]
    assert len(reports) == 1
