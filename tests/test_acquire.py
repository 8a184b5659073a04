"""Fault-injection suite: real downloads from a real threaded HTTP server on 127.0.0.1.

The payload is a small synthetic IDX image file (random pixels, so gzip cannot
shrink it) whose expected checksum is computed here; the real MNIST files are
used where the real file matters (memory bound, fetch_all).
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from pipeline.acquire.fetch import AcquireError, FetchOptions, fetch_all, fetch_file
from pipeline.acquire.files import BY_NAME, FILES, MnistFile
from pipeline.acquire.http import DownloadError, HtmlPageError, download, make_session
from pipeline.acquire.meter import format_progress
from pipeline.acquire.mirrors import resolve_mirror
from pipeline.acquire.verify import verify_gz
from tests.faultserver import FaultServer, closed_port_url

NAME = "train-images-idx3-ubyte.gz"
FAST = FetchOptions(connect_timeout=1.0, read_timeout=0.3, retries=2, backoff_factor=0.01)


def idx_images(n: int, seed: int) -> bytes:
    """An IDX images file of ``n`` random 28x28 images (uint8)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    return struct.pack(">IIII", 2051, n, 28, 28) + pixels.tobytes()


@pytest.fixture(scope="module")
def payload() -> tuple[bytes, MnistFile]:
    """(gzip bytes ~1.6 MB, the spec they satisfy) for a file named like the training images."""
    raw = idx_images(2000, seed=3)
    spec = MnistFile(NAME, "images", len(raw), hashlib.sha256(raw).hexdigest())
    return gzip.compress(raw, compresslevel=1, mtime=0), spec


@pytest.fixture
def server(payload):
    with FaultServer({NAME: payload[0]}, stall_seconds=3.0) as srv:
        yield srv


def fetch(spec, mirrors, dest, options=FAST, **kw):
    with make_session(options.retries, options.backoff_factor) as session:
        return fetch_file(spec, [resolve_mirror(m) for m in mirrors], dest, options=options,
                          session=session, **kw)


def assert_verified(dest: Path, payload: bytes) -> None:
    assert (dest / NAME).read_bytes() == payload
    assert not (dest / (NAME + ".part")).exists()
    assert not (dest / (NAME + ".part.json")).exists()


# --- the happy path and the manifest record ------------------------------------------------

def test_plain_download_gives_a_complete_record(server, payload, tmp_path):
    data, spec = payload
    record = fetch(spec, [server.url], tmp_path)
    assert_verified(tmp_path, data)
    assert record["mirror"] == server.url and record["url"] == server.url + NAME
    assert record["bytes"] == len(data)
    assert record["sha256_gz"] == hashlib.sha256(data).hexdigest()
    assert record["sha256_content"] == spec.sha256 and record["content_bytes"] == spec.content_bytes
    assert record["seconds"] >= 0 and record["failed_attempts"] == [] and record["interruptions"] == []
    assert record["resumed_from"] == 0
    assert [(h.range, h.status) for h in server.hits] == [(None, 200)]


# --- statuses: 5xx, 429 --------------------------------------------------------------------

def test_5xx_a_few_times_then_success_is_retried_by_the_session(server, payload, tmp_path):
    data, spec = payload
    server.plan(NAME, "status:500", "status:503")
    record = fetch(spec, [server.url], tmp_path)
    assert_verified(tmp_path, data)
    assert [h.status for h in server.hits] == [500, 503, 200]
    assert record["failed_attempts"] == []


def test_5xx_beyond_the_retries_fails_over_to_the_next_mirror(server, payload, tmp_path):
    data, spec = payload
    local = tmp_path / "local"
    local.mkdir()
    (local / NAME).write_bytes(data)
    server.plan(NAME, *["status:503"] * 5)
    record = fetch(spec, [server.url, str(local)], tmp_path / "out")
    assert_verified(tmp_path / "out", data)
    assert len(server.hits) == FAST.retries + 1  # the first try and its retries, then failover
    assert record["mirror"] == str(local)
    [failed] = record["failed_attempts"]
    assert failed["mirror"] == server.url and "HTTP 503" in failed["error"]


def test_429_honours_retry_after(payload, tmp_path):
    data, spec = payload
    with FaultServer({NAME: data}, retry_after=1) as srv:
        srv.plan(NAME, "429")
        fetch(spec, [srv.url], tmp_path)
        first, second = srv.hits
    assert (first.status, second.status) == (429, 200)
    # backoff_factor is 0.01 s: only Retry-After explains a one-second wait
    assert second.time - first.time >= 0.95


# --- interrupted bodies: resume with Range ---------------------------------------------------

@pytest.mark.parametrize("mode", ["drop", "close-early", "stall"])
def test_interrupted_body_resumes_with_range(server, payload, tmp_path, mode, caplog):
    data, spec = payload
    server.plan(NAME, mode)
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="pipeline.acquire"):
        record = fetch(spec, [server.url], tmp_path)
    assert_verified(tmp_path, data)
    first, second = server.hits
    assert first.range is None and first.mode == mode
    offset = record["resumed_from"]
    assert 0 < offset < len(data)
    assert (second.range, second.status) == (f"bytes={offset}-", 206)
    [interruption] = record["interruptions"]
    assert interruption.startswith(f"interrupted at byte {offset}: ")
    assert f"resuming {NAME}.part from byte {offset} of {len(data)}" in caplog.text
    assert time.monotonic() - start < server.stall_seconds  # the stall was cut by the read timeout


def test_a_server_that_ignores_range_gets_a_fresh_download(server, payload, tmp_path, caplog):
    data, spec = payload
    server.plan(NAME, "drop", "ignore-range")
    with caplog.at_level(logging.INFO, logger="pipeline.acquire"):
        record = fetch(spec, [server.url], tmp_path)
    assert_verified(tmp_path, data)
    first, second = server.hits
    assert second.range is not None and second.range.startswith("bytes=") and second.status == 200
    assert record["resumed_from"] == 0
    assert "ignored Range" in caplog.text and "starting over" in caplog.text


def test_a_part_left_by_a_killed_run_is_resumed(server, payload, tmp_path):
    """What a rerun after ``kill -9`` sees: a .part and its sidecar naming the URL."""
    data, spec = payload
    part = tmp_path / (NAME + ".part")
    fetch(spec, [server.url], tmp_path)  # learn the sidecar format from a real run...
    (tmp_path / NAME).unlink()
    server.hits.clear()
    server.plan(NAME, "drop")  # ...then leave half a file exactly as an interrupted transfer does
    with make_session(0, 0.01) as session:
        with pytest.raises(DownloadError):
            download(session, server.url + NAME, part, connect_timeout=1, read_timeout=1, attempts=1)
    kept = part.stat().st_size
    assert 0 < kept < len(data)
    record = fetch(spec, [server.url], tmp_path)
    assert_verified(tmp_path, data)
    assert record["resumed_from"] == kept and server.hits[-1].range == f"bytes={kept}-"


def test_a_part_from_another_mirror_is_not_resumed(server, payload, tmp_path):
    data, spec = payload
    part = tmp_path / (NAME + ".part")
    part.write_bytes(data[:1000])
    (tmp_path / (NAME + ".part.json")).write_text('{"url": "http://elsewhere.invalid/x.gz"}')
    record = fetch(spec, [server.url], tmp_path)
    assert_verified(tmp_path, data)
    assert record["resumed_from"] == 0 and server.hits[0].range is None


def test_a_whole_part_is_accepted_on_416(server, payload, tmp_path):
    data, spec = payload
    fetch(spec, [server.url], tmp_path)
    (tmp_path / NAME).rename(tmp_path / (NAME + ".part"))
    (tmp_path / (NAME + ".part.json")).write_text(f'{{"url": "{server.url}{NAME}"}}')
    server.hits.clear()
    fetch(spec, [server.url], tmp_path)
    assert_verified(tmp_path, data)
    assert [(h.range, h.status) for h in server.hits] == [(f"bytes={len(data)}-", 416)]


# --- lies about the length -------------------------------------------------------------------

def test_content_length_too_large_ends_with_the_verified_file(server, payload, tmp_path):
    """The body ends early by the header's count; the resume finds nothing missing (416)."""
    data, spec = payload
    server.plan(NAME, "length:+1000")
    fetch(spec, [server.url], tmp_path)
    assert_verified(tmp_path, data)
    assert [h.status for h in server.hits] == [200, 416]


def test_content_length_too_small_is_rejected_and_the_next_mirror_serves(server, payload, tmp_path):
    data, spec = payload
    good = FaultServer({NAME: data}).start()
    try:
        server.plan(NAME, *["length:-1000"] * 3)
        record = fetch(spec, [server.url, good.url], tmp_path)
    finally:
        good.stop()
    assert_verified(tmp_path, data)
    assert record["mirror"] == good.url
    [failed] = record["failed_attempts"]
    assert "rejected" in failed["error"] and "corrupt or truncated" in failed["error"]
    assert f"received {len(data) - 1000} bytes" in failed["error"]


# --- bad bytes: every failing mode ends in a clear error and no file at the final path --------

@pytest.mark.parametrize("mode, expect", [
    ("corrupt", "corrupt or truncated"),
    ("html", "HTML page"),
    ("html-as-binary", "HTML page"),
    ("length:-1000", "corrupt or truncated"),
    ("status:404", "HTTP 404"),
    ("status:503", "HTTP 503"),
    ("drop", "interrupted 3 times"),
    ("stall-headers", "Read timed out"),
])
def test_a_bad_mirror_alone_fails_clearly_and_leaves_no_file(payload, tmp_path, mode, expect):
    data, spec = payload
    with FaultServer({NAME: data}, mode=mode, stall_seconds=3.0) as srv:
        with pytest.raises(AcquireError) as info:
            fetch(spec, [srv.url], tmp_path)
    message = str(info.value)
    assert NAME in message and spec.sha256 in message and srv.url + NAME in message and expect in message
    assert not (tmp_path / NAME).exists()
    part = tmp_path / (NAME + ".part")
    if mode == "drop":  # the bytes received are genuine and kept for a resume
        assert 0 < part.stat().st_size < len(data)
    else:
        assert not part.exists() or part.stat().st_size == 0


def test_valid_gzip_of_the_wrong_content_names_both_hashes(payload, tmp_path):
    data, spec = payload
    other = idx_images(2000, seed=4)
    with FaultServer({NAME: gzip.compress(other, mtime=0)}) as srv:
        with pytest.raises(AcquireError) as info:
            fetch(spec, [srv.url], tmp_path)
    message = str(info.value)
    assert spec.sha256 in message and hashlib.sha256(other).hexdigest() in message
    assert not (tmp_path / NAME).exists() and not (tmp_path / (NAME + ".part")).exists()


def test_truncated_content_is_named_by_the_idx_check(payload, tmp_path):
    data, spec = payload
    raw = gzip.decompress(data)
    with FaultServer({NAME: gzip.compress(raw[:-784], mtime=0)}) as srv:
        with pytest.raises(AcquireError, match=r"truncated: header says 2000x28x28 \(1568016 bytes\) but the file has 1567232"):
            fetch(spec, [srv.url], tmp_path)


def test_an_html_page_is_refused_before_its_body_is_saved(server, payload, tmp_path):
    server.plan(NAME, "html")
    with make_session(0, 0.01) as session:
        with pytest.raises(HtmlPageError, match="text/html"):
            download(session, server.url + NAME, tmp_path / "x.part", connect_timeout=1, read_timeout=1)
    assert not (tmp_path / "x.part").exists()


# --- local mirrors and failover across hosts -----------------------------------------------

@pytest.mark.parametrize("form", ["absolute", "relative", "file-url"])
def test_local_directory_mirrors(payload, tmp_path, monkeypatch, form):
    data, spec = payload
    local = tmp_path / "mirror dir"  # a space, to exercise the file:// URL quoting
    local.mkdir()
    (local / NAME).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    mirror = {"absolute": str(local), "relative": "mirror dir", "file-url": local.as_uri()}[form]
    record = fetch(spec, [mirror], tmp_path / "out")
    assert_verified(tmp_path / "out", data)
    assert record["mirror"] == mirror and record["url"] == str(local / NAME)


def test_unsupported_mirror_scheme_is_refused():
    with pytest.raises(ValueError, match="ftp"):
        resolve_mirror("ftp://example.org/mnist/")
    assert resolve_mirror("https://h/m/").location("a.gz") == "https://h/m/a.gz"
    assert resolve_mirror("https://h/m").location("a.gz") == "https://h/m/a.gz"


def test_a_missing_local_directory_fails_over(server, payload, tmp_path):
    data, spec = payload
    record = fetch(spec, [str(tmp_path / "nowhere"), server.url], tmp_path / "out")
    assert record["mirror"] == server.url
    assert "directory not found" in record["failed_attempts"][0]["error"]


def test_an_unreachable_host_fails_fast_and_is_not_asked_again(mnist_dir, tmp_path):
    """Connection refused: one retry, then the next mirror; later files skip that host."""
    dead = closed_port_url()
    start = time.monotonic()
    manifest = fetch_all(tmp_path, [dead, str(mnist_dir)], FetchOptions(retries=3, backoff_factor=0.5))
    assert time.monotonic() - start < 5
    assert list(manifest) == [f.name for f in FILES]
    first, *rest = [manifest[f.name]["failed_attempts"] for f in FILES]
    assert "NewConnectionError" in first[0]["error"] and "refused" in first[0]["error"].lower()
    assert all(len(a) == 1 and a[0]["error"].startswith("skipped: unreachable") for a in rest)
    for spec in FILES:
        assert manifest[spec.name]["sha256_content"] == spec.sha256
        assert manifest[spec.name]["content_bytes"] == spec.content_bytes


def test_verified_files_are_not_downloaded_again(mnist_dir, tmp_path):
    with FaultServer(mnist_dir) as srv:
        first = fetch_all(tmp_path, [srv.url], FAST)
        assert len(srv.hits) == 4
        second = fetch_all(tmp_path, [srv.url], FAST, previous=first)
        assert len(srv.hits) == 4 and second == first
        # a damaged file is fetched again, the others are kept
        path = tmp_path / "t10k-labels-idx1-ubyte.gz"
        path.write_bytes(path.read_bytes()[:-10])
        third = fetch_all(tmp_path, [srv.url], FAST, previous=first)
        # a damaged file is removed even when no mirror can replace it
        path.write_bytes(b"junk")
        with pytest.raises(AcquireError, match="t10k-labels-idx1-ubyte.gz: no mirror"):
            fetch_all(tmp_path, [closed_port_url()], FAST, previous=first)
        assert not path.exists()
    assert [h.path for h in srv.hits[4:]] == ["t10k-labels-idx1-ubyte.gz"]
    assert third["t10k-labels-idx1-ubyte.gz"]["sha256_gz"] == first["t10k-labels-idx1-ubyte.gz"]["sha256_gz"]


# --- bounded memory, progress ---------------------------------------------------------------

def test_download_memory_does_not_grow_with_the_file(tmp_path):
    big = np.random.default_rng(0).integers(0, 256, 8_000_000, dtype=np.uint8).tobytes()
    with FaultServer({"big.bin": big}) as srv, make_session(0, 0.01) as session:
        tracemalloc.start()
        try:
            download(session, srv.url + "big.bin", tmp_path / "big.part", connect_timeout=1, read_timeout=5)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (tmp_path / "big.part").read_bytes() == big
    assert peak < 1_000_000, f"peak {peak} bytes traced while downloading 8 MB"


def test_verification_streams_the_47_mb_content(mnist_dir):
    tracemalloc.start()
    try:
        verified = verify_gz(mnist_dir / NAME, BY_NAME[NAME])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert verified.content_bytes == 47_040_016
    assert peak < 8_000_000, f"peak {peak} bytes traced while verifying 47 MB of content"


def test_progress_reports_bytes_total_and_rate(payload, tmp_path, capfd):
    data, spec = payload
    calls = []
    with FaultServer({NAME: data}, mode="slow", rate=4e6) as srv, make_session(0, 0.01) as session:
        download(session, srv.url + NAME, tmp_path / "x.part", connect_timeout=1, read_timeout=5,
                 progress=lambda d, t, r: calls.append((d, t, r)))
    assert len(calls) >= 3  # ~0.4 s at 4 MB/s: one report per 64 kB chunk
    assert calls[-1][:2] == (len(data), len(data))
    assert all(0 < d <= t == len(data) for d, t, _ in calls)
    assert [d for d, _, _ in calls] == sorted(d for d, _, _ in calls)
    assert calls[0][2] is None  # the first chunk's timing says nothing about the rate
    assert 1e6 < calls[-1][2] < 8e6  # the rate the server sent at, within slack
    assert f"of {len(data) / 1e6:.1f} MB (100%)  " in format_progress(NAME, *calls[-1])
    assert capfd.readouterr() == ("", "")  # the pipeline reports; it never prints


def test_fetch_all_reports_the_share_of_the_four_files(mnist_dir, tmp_path, capfd):
    """One callback, (fraction, message): rising through the files, 1.0 once at the end, nothing printed."""
    calls = []
    with FaultServer(mnist_dir) as srv:
        manifest = fetch_all(tmp_path, [srv.url], FAST, progress=lambda f, m: calls.append((f, m)))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and 0 <= fractions[0] < 0.25
    assert fractions[-1] == 1.0 and fractions.count(1.0) == 1  # 1.0 means done, and is said once
    for i, spec in enumerate(FILES):
        total = (mnist_dir / spec.name).stat().st_size
        mine = [(f, m) for f, m in calls if m.startswith(f"file {i + 1}/4: {spec.name}  ")]
        assert mine and all(i / 4 <= f <= (i + 1) / 4 for f, _ in mine)
        unit, scale = ("MB", 1e6) if total >= 1e6 else ("kB", 1e3)
        assert f"{total / scale:.1f} of {total / scale:.1f} {unit} (100%)" in mine[-1][1]
        assert mine[-1][0] == pytest.approx(min((i + 1) / 4, 0.999))
    assert calls[-1][1] == "verified: " + ", ".join(f"{spec.name} from {srv.url}" for spec in FILES)
    assert list(manifest) == [spec.name for spec in FILES]
    # a rerun finds the four files in place: each is reported as such
    again = []
    fetch_all(tmp_path, [srv.url], FAST, previous=manifest, progress=lambda f, m: again.append((f, m)))
    assert [m for _, m in again][:4] == [f"file {i + 1}/4: {spec.name} already present and verified"
                                         for i, spec in enumerate(FILES)]
    assert again[-1] == (1.0, calls[-1][1])
    assert capfd.readouterr() == ("", "")


# --- two runs on one data directory ---------------------------------------------------------------

_HOLD_LOCK = """
import fcntl, sys, time
fh = open(sys.argv[1], "w")
fcntl.flock(fh, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _hold_fetch_lock(dest: Path, seconds: float):
    import subprocess
    import sys

    from pipeline.acquire.fetch import LOCK_FILE

    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(dest / LOCK_FILE), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_fetch_waits_for_the_first_and_says_so(mnist_dir, tmp_path):
    holder = _hold_fetch_lock(tmp_path / "raw", 1.5)
    messages = []
    start = time.monotonic()
    try:
        manifest = fetch_all(tmp_path / "raw", [str(mnist_dir)], FetchOptions(lock_timeout=30),
                             progress=lambda f, m: messages.append(m))
    finally:
        holder.wait(10)
    assert time.monotonic() - start >= 1.0  # it waited for the lock instead of failing at once
    assert any(m.startswith("waiting for another run's download") for m in messages)
    assert sorted(manifest) == sorted(f.name for f in FILES)


def test_a_lock_held_past_the_timeout_fails_clearly(mnist_dir, tmp_path):
    holder = _hold_fetch_lock(tmp_path / "raw", 5)
    try:
        with pytest.raises(AcquireError, match=r"another run has been fetching into .*\(lock_timeout in luigi.cfg"):
            fetch_all(tmp_path / "raw", [str(mnist_dir)], FetchOptions(lock_timeout=0.6))
    finally:
        holder.kill()
        holder.wait(10)
    assert not any((tmp_path / "raw").glob("*.gz"))
