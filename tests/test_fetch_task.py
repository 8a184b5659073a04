"""FetchMNIST end to end: real HTTP on 127.0.0.1, the bundled mirror, and a real ``kill -9`` and resume."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import luigi
import luigi.scheduler
import luigi.worker

from pipeline.acquire.files import FILES
from tasks.acquire import FetchMNIST
from tests.faultserver import FaultServer, closed_port_url

REPO = Path(__file__).resolve().parents[1]
FAST = dict(connect_timeout=1.0, read_timeout=2.0, retries=1, backoff_factor=0.01)
TRAIN = "train-images-idx3-ubyte.gz"


def build(task) -> bool:
    return luigi.build([task], local_scheduler=True, log_level="WARNING")


def raw_dir(root: Path) -> Path:
    return root / "data" / "raw" / "mnist"


def test_fetch_writes_verified_files_and_the_manifest(isolated_storage, mnist_dir):
    with FaultServer(mnist_dir) as srv:
        task = FetchMNIST(mirrors=[srv.url], **FAST)
        assert build(task)
        out = raw_dir(isolated_storage)
        assert Path(task.output().path) == out / "manifest.json"
        manifest = json.loads((out / "manifest.json").read_text())
        assert sorted(manifest) == sorted(f.name for f in FILES)  # keyed by file name (JSON sorts keys)
        for spec in FILES:
            rec = manifest[spec.name]
            data = (out / spec.name).read_bytes()
            assert rec["mirror"] == srv.url and rec["url"] == srv.url + spec.name
            assert rec["bytes"] == len(data) == (mnist_dir / spec.name).stat().st_size
            assert rec["sha256_gz"] == hashlib.sha256(data).hexdigest()
            assert rec["sha256_content"] == spec.sha256 == hashlib.sha256(gzip.decompress(data)).hexdigest()
            assert rec["content_bytes"] == spec.content_bytes and rec["failed_attempts"] == []
            assert rec["seconds"] >= 0
        assert sorted(p.name for p in out.iterdir()) == sorted([".fetch.lock", "manifest.json", *manifest])

        # a rerun is a no-op; a deleted file makes the task incomplete and only that file is fetched
        hits = len(srv.hits)
        assert build(FetchMNIST(mirrors=[srv.url], **FAST)) and len(srv.hits) == hits
        (out / "t10k-labels-idx1-ubyte.gz").unlink()
        assert not FetchMNIST(mirrors=[srv.url], **FAST).complete()
        assert build(FetchMNIST(mirrors=[srv.url], **FAST))
        assert [h.path for h in srv.hits[hits:]] == ["t10k-labels-idx1-ubyte.gz"]
    again = json.loads((out / "manifest.json").read_text())
    assert again[TRAIN] == manifest[TRAIN]  # kept files keep their provenance


def test_offline_the_bundled_copy_serves(isolated_storage, mnist_dir):
    """An unreachable mirror first (connection refused), then the relative bundled path from luigi.cfg."""
    dead = closed_port_url()
    start = time.monotonic()
    assert build(FetchMNIST(mirrors=[dead, "data/mirror/mnist"], connect_timeout=1.0, retries=3, backoff_factor=0.5))
    assert time.monotonic() - start < 10
    manifest = json.loads((raw_dir(isolated_storage) / "manifest.json").read_text())
    for spec in FILES:
        assert manifest[spec.name]["mirror"] == "data/mirror/mnist"
        assert manifest[spec.name]["failed_attempts"][0]["mirror"] == dead


def test_no_verified_mirror_fails_the_task_and_writes_nothing(isolated_storage, mnist_dir):
    with FaultServer(mnist_dir, mode="corrupt") as srv:
        assert not build(FetchMNIST(mirrors=[srv.url, closed_port_url()], **FAST))
    out = raw_dir(isolated_storage)
    assert not (out / "manifest.json").exists()
    assert not any((out / spec.name).exists() for spec in FILES)


def test_mirror_parameters_do_not_change_the_task_id():
    a = FetchMNIST(mirrors=["http://a/"], retries=1)
    b = FetchMNIST(mirrors=["data/mirror/mnist"], retries=5, read_timeout=1.0)
    assert a.task_id == b.task_id


def test_progress_reaches_the_scheduler(isolated_storage, mnist_dir):
    scheduler = luigi.scheduler.Scheduler()
    task = FetchMNIST(mirrors=[str(mnist_dir)], **FAST)
    with luigi.worker.Worker(scheduler=scheduler) as worker:
        assert worker.add(task)
        assert worker.run()
    assert scheduler.get_task_progress_percentage(task.task_id)["progressPercentage"] == 100
    message = scheduler.get_task_status_message(task.task_id)["statusMessage"]
    assert all(f"{spec.name} from {mnist_dir}" in message for spec in FILES)


def test_kill_9_mid_download_then_rerun_resumes_with_range(tmp_path, mnist_dir):
    """A real SIGKILL of a command-line run while the training images stream in slowly."""
    data_dir = tmp_path / "data"
    part = data_dir / "raw" / "mnist" / (TRAIN + ".part")
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(url: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "luigi", "--module", "tasks.acquire", "FetchMNIST", "--local-scheduler",
               "--storage-data-dir", str(data_dir), "--mirrors", json.dumps([url]), "--FetchMNIST-retries", "1"]
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    with FaultServer(mnist_dir, mode="slow", rate=3e6) as srv:
        first = run(srv.url)
        deadline = time.monotonic() + 30
        while not (part.exists() and part.stat().st_size > 1_000_000):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0]
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        kept = part.stat().st_size
        assert 1_000_000 < kept < (mnist_dir / TRAIN).stat().st_size
        assert not (part.parent / TRAIN).exists()

        srv.default_mode = "ok"
        second = run(srv.url)
        log = second.communicate(timeout=60)[0]
    assert second.returncode == 0, log
    assert f"resuming {TRAIN}.part from byte {kept} of {(mnist_dir / TRAIN).stat().st_size} (HTTP 206)" in log
    assert [h.range for h in srv.hits if h.path == TRAIN][-1] == f"bytes={kept}-"
    manifest = json.loads((part.parent / "manifest.json").read_text())
    assert manifest[TRAIN]["resumed_from"] == kept
    assert manifest[TRAIN]["sha256_content"] == FILES[0].sha256
