"""Unattended operation through the real `luigi` command (issue 11, points 1, 4, 5 and 6).

- exit codes (Luigi's recommended [retcode] values, set by the tasks package): a failed task, a bad
  parameter, a full disk, a run from a directory without the project's luigi.cfg;
- failure notification: Luigi's own mail ([email]/[smtp]) to a real SMTP server on 127.0.0.1,
  and the JSON webhook ([notify]) to a real HTTP server on 127.0.0.1;
- overlapping runs: different parameters share one data directory; an identical second run exits
  already_running through Luigi's pid lock;
- production settings: a real `luigid` keeping task history in SQLite, and retries of a transient failure.

Test-only settings go in temporary config files passed with LUIGI_CONFIG_PATH, which Luigi reads
after the repository's luigi.cfg.
"""
from __future__ import annotations

import email
import fcntl
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.acquire.files import FILES
from tests.conftest import REPO
from tests.faultserver import FaultServer

pytestmark = pytest.mark.slow

SMALL = ["--train-limit", "2000", "--epochs", "1", "--preset", "simple"]
BUNDLED = "data/mirror/mnist"
PIPELINE = {"FetchMNIST", "CleanData", "PrepareData", "ExploreData", "TrainCNN", "EvaluateCNN",
            "RenderReport", "RunIndex", "RunPipeline"}
TESTS = Path(__file__).resolve().parent
# A kept-alive worker asks for work every wait_interval s plus up to wait_jitter s (1 + 5 by default):
# shorter here, so that waiting for a retry costs the test about retry_delay.
QUICK_POLL = {"wait_interval": 0.2, "wait_jitter": 0.2}


def luigi_exe() -> list[str]:
    """The `luigi` console script of this interpreter (not a shim that may pick another Python)."""
    script = Path(sys.executable).with_name("luigi")
    return [str(script)] if script.exists() else [sys.executable, "-m", "luigi"]


def command(root: Path, *args: str, mirrors=(BUNDLED,), module: str = "tasks", local: bool = True) -> list[str]:
    cmd = [*luigi_exe(), "--module", module, *args]
    if module == "tasks":
        cmd += ["--storage-data-dir", str(root / "data"), "--storage-report-dir", str(root / "reports"),
                "--FetchMNIST-mirrors", json.dumps(list(mirrors))]
    return cmd + (["--local-scheduler"] if local else [])


def environment(config: Path | None = None) -> dict[str, str]:
    # The code of this checkout first (whatever is installed), and tests/ for --module flaky_tasks.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    env.pop("LUIGI_CONFIG_PATH", None)
    if config is not None:
        env["LUIGI_CONFIG_PATH"] = str(config)
    return env


@dataclass
class Run:
    code: int
    out: str
    seconds: float


def run_luigi(cmd: list[str], config: Path | None = None, timeout: float = 600, cwd: Path = REPO) -> Run:
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=cwd, env=environment(config), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    run = Run(done.returncode, done.stdout, time.monotonic() - started)
    print(f"[{run.seconds:5.1f} s, exit {run.code}] {' '.join(cmd[1:4])} ...")
    return run


def start_luigi(cmd: list[str], log: Path, config: Path | None = None) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=environment(config), stdout=out, stderr=subprocess.STDOUT)


def wait_for(predicate, what: str, timeout: float = 120.0, procs: tuple = ()) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for proc in procs:
            assert proc.poll() is None, f"a run ended (exit {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:g} s"
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(path: Path, sections: dict[str, dict[str, object]]) -> Path:
    path.write_text("".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
                            for name, values in sections.items()))
    return path


def temp_debris(root: Path) -> list[Path]:
    """Half-written files or directories: atomic writers' temporaries, staging dirs, partial downloads."""
    return [p for p in root.rglob("*") if p.name.endswith((".tmp", ".staging", ".old", ".part"))]


# --- 1. exit codes -------------------------------------------------------------------------------

def test_failed_task_exits_task_failed_and_says_what_to_do(tmp_path):
    run = run_luigi(command(tmp_path, "RunPipeline", *SMALL, mirrors=["/nonexistent"]))
    assert run.code == 30, run.out[-3000:]  # [retcode] task_failed
    assert "no mirror delivered a verified file" in run.out and "/nonexistent" in run.out
    assert "data/mirror/mnist" in run.out  # the fix: the copy bundled in the repository works offline
    assert not (tmp_path / "data" / "raw" / "mnist" / "manifest.json").exists()
    assert "DEBUG:" not in run.out  # [core] log_level = INFO: no scheduler chatter


@pytest.mark.parametrize("flag, value, says", [
    ("--preset", "nope", ["unknown model preset 'nope'", "valid presets: ", "simple"]),
    ("--epochs", "0", ["epochs must be >= 1 (got 0)"]),
    ("--learning-rate", "-1", ["learning_rate must be > 0 (got -1.0)"]),
])
def test_bad_parameter_exits_scheduling_error_naming_the_setting(tmp_path, flag, value, says):
    run = run_luigi(command(tmp_path, "RunPipeline", *SMALL, flag, value))
    assert run.code == 35, run.out[-3000:]  # [retcode] scheduling_error: refused before anything ran
    for text in says:
        assert text in run.out
    assert f"Fix: {flag} on the command line" in run.out  # the message names the flag to change
    assert "failed scheduling" in run.out
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.pkl"))


def test_a_run_outside_the_project_directory_fails_visibly_and_says_why(tmp_path):
    """Cron without `cd`: Luigi finds no luigi.cfg, so neither the project's settings nor a [retcode]
    section; the exit codes still apply (the tasks package sets them) and the log names the fix."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cmd = [*luigi_exe(), "--module", "tasks", "RunPipeline", "--local-scheduler",
           "--storage-data-dir", str(tmp_path / "data"), "--storage-report-dir", str(tmp_path / "reports")]
    run = run_luigi(cmd, cwd=elsewhere)
    assert run.code == 35, run.out[-3000:]  # scheduling_error: FetchMNIST has no mirrors
    assert "the project's luigi.cfg was not read" in run.out and f"from {elsewhere}" in run.out
    assert "LUIGI_CONFIG_PATH=/path/to/the/project/luigi.cfg" in run.out

    # a [retcode] value in a config file still wins over the package's
    config = tmp_path / "codes.cfg"
    config.write_text("[retcode]\nscheduling_error = 3\n")
    assert run_luigi(cmd, config=config, cwd=elsewhere).code == 3


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs: room for the raw MNIST files (11 MB), not for the cleaned arrays (54 MB)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)],
                                 capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no `mount` command here, so no small filesystem to fill")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_full_disk_exits_task_failed_keeps_raw_data_and_leaves_nothing_half_written(tmp_path, small_disk, mnist_dir):
    cmd = command(tmp_path, "RunPipeline", *SMALL)
    cmd[cmd.index("--storage-data-dir") + 1] = str(small_disk / "data")
    run = run_luigi(cmd)
    assert run.code == 30, run.out[-3000:]
    assert "no space left on the device while writing" in run.out
    assert "Free space there, or point data_dir/report_dir ([storage] in luigi.cfg) at a larger disk" in run.out
    raw = small_disk / "data" / "raw" / "mnist"
    manifest = json.loads((raw / "manifest.json").read_text())
    assert set(manifest) == {f.name for f in FILES}
    for spec in FILES:  # the raw files are intact and verified
        assert (raw / spec.name).read_bytes() == (mnist_dir / spec.name).read_bytes()
    assert temp_debris(small_disk) == []
    assert not list((small_disk / "data").glob("interim/*/manifest.json"))  # no output claims to be complete
    assert not [p for p in (small_disk / "data").glob("interim/*") if p.is_dir()]


# --- 4. failure notification ---------------------------------------------------------------------

class Inbox:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self):
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


def _text(message: email.message.Message) -> str:
    return "\n".join(part.get_payload(decode=True).decode() for part in message.walk()
                     if part.get_content_type() == "text/plain")


def test_failure_mail_through_luigis_email_and_smtp_settings(tmp_path):
    controller_module = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd is a test extra")
    inbox, port = Inbox(), free_port()
    server = controller_module.Controller(inbox, hostname="127.0.0.1", port=port)
    server.start()
    try:
        config = write_config(tmp_path / "mail.cfg", {
            "email": {"receiver": "ops@example.com", "sender": "mnist-nightly@example.com", "force_send": "true"},
            "smtp": {"host": "127.0.0.1", "port": port, "no_tls": "true", "timeout": 10},
        })
        run = run_luigi(command(tmp_path, "RunPipeline", *SMALL, mirrors=["/nonexistent"]), config)
    finally:
        server.stop()
    assert run.code == 30, run.out[-3000:]  # the recommended exit codes still apply
    assert len(inbox.messages) == 1, run.out[-3000:]
    mail = inbox.messages[0]
    assert mail["To"] == "ops@example.com" and mail["From"] == "mnist-nightly@example.com"
    assert "FetchMNIST" in mail["Subject"] and "FAILED" in mail["Subject"]
    body = _text(mail)
    assert "AcquireError" in body and "no mirror delivered a verified file" in body and "/nonexistent" in body


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append((self.headers.get("Content-Type"), json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.posts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("case, args, mirrors, event, task, reason", [
    ("failed task", [], ["/nonexistent"], "task_failed", "FetchMNIST",
     "AcquireError: train-images-idx3-ubyte.gz: no mirror delivered a verified file"),
    ("bad parameter", ["--epochs", "0"], [BUNDLED], "task_broken", "RunPipeline",
     "ValueError: bad training configuration: epochs must be >= 1 (got 0)"),
])
def test_failure_webhook_posts_json_naming_the_task_and_reason(tmp_path, webhook, case, args, mirrors, event,
                                                               task, reason):
    url = f"http://127.0.0.1:{webhook.server_address[1]}/hooks/nightly"
    config = write_config(tmp_path / "notify.cfg", {"notify": {"webhook_url": url}})
    run = run_luigi(command(tmp_path, "RunPipeline", *SMALL, *args, mirrors=mirrors), config)
    assert run.code in (30, 35), run.out[-3000:]
    assert len(webhook.posts) == 1, webhook.posts
    content_type, payload = webhook.posts[0]
    assert content_type == "application/json"
    assert payload["event"] == event and payload["task"] == task
    assert payload["reason"].startswith(reason)
    assert payload["task_id"].startswith(task) and payload["host"] == socket.gethostname()
    assert payload["text"].startswith(f"{task} ")


# --- 5. overlapping runs -------------------------------------------------------------------------

def test_runs_with_different_parameters_overlap_on_one_data_directory(tmp_path, mnist_dir):
    """Started together on an empty data directory, two runs with different seeds share the download
    and the cleaned data: one makes them, the other waits for its lock and reuses them, and both finish
    with nothing stale. (The first download is held up by the server until the wait is seen, so the wait
    always happens; the runs stop at the model, past the stages they share, to keep the test short.)"""
    commands = {seed: command(tmp_path, "TrainCNN", *SMALL, "--seed", str(seed), mirrors=[]) for seed in (1, 2)}
    with FaultServer(mnist_dir, stall_seconds=120) as server:
        server.plan(FILES[0].name, "stall")  # the first request for the first file hangs until released
        for cmd in commands.values():
            cmd[cmd.index("--FetchMNIST-mirrors") + 1] = json.dumps([server.url])
        logs = {seed: tmp_path / f"seed{seed}.log" for seed in commands}
        procs = [start_luigi(commands[seed], logs[seed]) for seed in commands]
        try:
            wait_for(lambda: any("waiting for it" in log.read_text() for log in logs.values()),
                     "'waiting for it' line", procs=procs)
            server.released.set()  # the stalled transfer ends; the downloader resumes it
            codes = [proc.wait(timeout=600) for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
        outs = {seed: log.read_text() for seed, log in logs.items()}
        assert codes == [0, 0], {seed: out[-3000:] for seed, out in outs.items()}
        waited = [out for out in outs.values() if "waiting for it" in out]
        assert len(waited) == 1
        assert waited[0].count("already present and verified") == len(FILES)  # it reused the other run's files
        full_downloads = sorted(h.path for h in server.hits if h.range is None)
        assert full_downloads == sorted(f.name for f in FILES)  # each file was fetched once (one was resumed)
        data = tmp_path / "data"
        (cleaned,) = data.glob("interim/*/manifest.json")
        prepared = list(data.glob("processed/*/manifest.json"))
        assert len(prepared) == 2 and len(list(data.glob("models/*/model.pkl"))) == 2
        # The cleaned data was made once (one run's cleaning reached 100%), before both splits: not
        # remade under the other run's feet, which would leave that run's split stale.
        assert sum(out.count("CleanData [100.0%]") for out in outs.values()) == 1, "cleaned twice"
        assert all(cleaned.stat().st_mtime_ns <= p.stat().st_mtime_ns for p in prepared)
        again = run_luigi(commands[1])  # so the next run finds everything done
        assert again.code == 0 and "running   " not in again.out, again.out[-3000:]


def test_identical_second_run_exits_already_running(tmp_path, mnist_dir):
    """Luigi's pid lock: an identical command line started while the first runs exits 10 at once.

    The first run is held inside FetchMNIST by the download lock, which the test takes as another run
    would; the second starts once the first says it is waiting. (Two identical commands started in
    the very same instant can both pass Luigi's pid-file check, which reads then writes the file.)"""
    raw = tmp_path / "data" / "raw" / "mnist"
    raw.mkdir(parents=True)
    cmd = command(tmp_path, "FetchMNIST", "--lock-pid-dir", str(tmp_path / "locks"))
    with open(raw / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        first = start_luigi(cmd, tmp_path / "first.log")
        try:
            wait_for(lambda: "waiting for it" in (tmp_path / "first.log").read_text(), "wait for the lock",
                     procs=(first,))
            second = run_luigi(cmd)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    assert second.code == 10, second.out[-3000:]  # [retcode] already_running
    assert f"Pid(s) {{{first.pid}}} already running" in second.out
    assert first.wait(timeout=120) == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert (raw / "manifest.json").exists()


# --- 6. production settings: luigid with task history, retries -----------------------------------

@dataclass
class Luigid:
    port: int
    history: Path

    def args(self) -> list[str]:
        return ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(self.port)]

    def events(self) -> list[tuple[str, str]]:
        """(task family, event) rows of the task history, oldest first."""
        with sqlite3.connect(self.history) as db:
            return db.execute("SELECT t.name, e.event_name FROM task_events e JOIN tasks t ON e.task_id = t.id "
                              "ORDER BY e.ts, e.id").fetchall()


@pytest.fixture
def luigid(tmp_path):
    """A real luigid on 127.0.0.1 with the production settings: SQLite task history and retries."""
    sqlalchemy = pytest.importorskip("sqlalchemy", reason="luigid's task history needs SQLAlchemy "
                                                          "(the 'scheduler' extra)")
    if int(sqlalchemy.__version__.split(".")[0]) >= 2:
        pytest.skip(f"Luigi's task history needs SQLAlchemy < 2 (installed: {sqlalchemy.__version__}); "
                    "pip install -e '.[scheduler]'")
    exe = Path(sys.executable).with_name("luigid")
    if not exe.exists():
        pytest.skip("luigid is not installed beside this Python (it comes with `pip install luigi`)")
    home, port = tmp_path / "luigid", free_port()
    home.mkdir()
    history = home / "history.db"
    config = write_config(home / "luigid.cfg", {
        # luigid re-queues failed tasks when it prunes, once a minute by default: pruning on every
        # request for work lets a 1 s retry_delay be 1 s here.
        "scheduler": {"record_task_history": "true", "retry_delay": 1, "retry_count": 3, "prune_on_get_work": "true"},
        "task_history": {"db_connection": f"sqlite:///{history}"},
    })
    with open(home / "luigid.log", "w") as log:
        proc = subprocess.Popen([str(exe), "--address", "127.0.0.1", "--port", str(port), "--logdir", str(home),
                                 "--state-path", str(home / "state.pickle")],
                                cwd=home, env=environment(config), stdout=log, stderr=subprocess.STDOUT)

    def answers() -> bool:
        assert proc.poll() is None, (home / "luigid.log").read_text()[-3000:]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/task_list", timeout=1)
            return True
        except OSError:
            return False
    try:
        wait_for(answers, "answer from luigid", timeout=30)
        yield Luigid(port, history)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_luigid_keeps_the_task_history_in_sqlite(tmp_path, luigid):
    run = run_luigi(command(tmp_path, "RunPipeline", *SMALL, *luigid.args(), local=False))
    assert run.code == 0, run.out[-3000:]
    events = luigid.events()
    done = {name for name, event in events if event == "DONE"}
    ran = {name for name, event in events if event == "RUNNING"}
    assert PIPELINE <= done
    assert PIPELINE - {"RunPipeline"} <= ran  # the wrapper task has no run() of its own
    assert not [row for row in events if row[1] == "FAILED"]
    with sqlite3.connect(luigid.history) as db:  # the parameters are kept too
        params = dict(db.execute("SELECT p.name, p.value FROM task_parameters p JOIN tasks t ON p.task_id = t.id "
                                 "WHERE t.name = 'TrainCNN'").fetchall())
    assert params["train_limit"] == "2000" and params["preset"] == "simple"


def test_transient_failure_is_retried_through_luigid(tmp_path, luigid):
    worker = write_config(tmp_path / "worker.cfg", {"worker": {"keep_alive": "true", **QUICK_POLL}})
    state = tmp_path / "flaky"
    run = run_luigi(command(tmp_path, "Flaky", "--state-dir", str(state), *luigid.args(),
                            module="flaky_tasks", local=False), worker)
    assert run.code == 0, run.out[-3000:]
    assert (state / "attempts").read_text().count("attempt") == 2  # failed once, retried, succeeded
    assert "transient failure 1 of 1" in run.out
    flaky = [event for name, event in luigid.events() if name == "Flaky"]
    assert flaky[-1] == "DONE" and "RUNNING" in flaky[flaky.index("FAILED"):]  # ran again after failing


@pytest.mark.parametrize("failures, code, attempts", [(1, 0, 2), (99, 30, 3)])
def test_retries_with_a_local_scheduler_and_a_bound_on_them(tmp_path, failures, code, attempts):
    """A transient failure is retried after retry_delay; a lasting one stops after retry_count attempts
    (keep_alive would otherwise keep the worker retrying forever) and exits task_failed."""
    config = write_config(tmp_path / "retry.cfg", {"scheduler": {"retry_delay": 1, "retry_count": 3},
                                                   "worker": {"keep_alive": "true", **QUICK_POLL}})
    state = tmp_path / "flaky"
    run = run_luigi(command(tmp_path, "Flaky", "--state-dir", str(state), "--failures", str(failures),
                            module="flaky_tasks"), config, timeout=120)
    assert run.code == code, run.out[-3000:]
    assert (state / "attempts").read_text().count("attempt") == attempts
    assert (state / "done").exists() == (code == 0)
