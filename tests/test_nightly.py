"""Nightly operation through the real `luigi` command (issue 11, points 2 and 3).

The commands run on a copy of this checkout's code, made once per session, so that an edit of the
working tree while the tests run cannot make a night look changed. One small night is run from
scratch once per session; each test works on a copy of its data and reports (copied with their
modification times, so the copy is exactly as complete). Mirrors are always given explicitly:
a test never reaches the internet.
"""
from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.store.provenance import blas_threads
from tests.conftest import REPO
from tests.faultserver import FaultServer, closed_port_url

pytestmark = pytest.mark.slow

SMALL = ["--train-limit", "2000", "--epochs", "1", "--preset", "simple", "--seed", "7"]
OF_PARAMS = {"train_limit": 2000, "epochs": 1, "preset": "simple", "seed": 7}  # SMALL, for RangeDailyBase
BUNDLED = "data/mirror/mnist"  # relative to the directory luigi runs in, as in luigi.cfg
FIRST = "2026-01-01"
NIGHT_FILES = {"report.html", "nightly.html", "nightly.json", "mirrors.json", "metrics.json", "manifest.json"}
STAGES = ("interim", "processed", "explore", "models", "eval")


def luigi_exe() -> list[str]:
    """The `luigi` console script of this interpreter (not a shim that may pick another Python)."""
    script = Path(sys.executable).with_name("luigi")
    return [str(script)] if script.exists() else [sys.executable, "-m", "luigi"]


def checkout_copy(dest: Path, source: Path = REPO) -> Path:
    """The code of this checkout (or of a copy, ``source``) in ``dest``, the bundled MNIST linked."""
    for part in ("pipeline", "tasks"):
        shutil.copytree(source / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(source / "luigi.cfg", dest / "luigi.cfg")
    (dest / "data").mkdir()
    (dest / "data" / "mirror").symlink_to(REPO / "data" / "mirror")
    return dest


@dataclass
class Run:
    code: int
    out: str
    seconds: float

    def ran(self) -> set[str]:
        """Task families this process ran (Luigi's 'running' lines)."""
        return set(re.findall(r"\) running\s+(\w+)\(", self.out))


def stamps(root: Path) -> dict[str, int]:
    """{stage/output: mtime of its manifest}: which outputs a run rewrote."""
    found = {"raw": (root / "data" / "raw" / "mnist" / "manifest.json").stat().st_mtime_ns}
    for stage in STAGES:
        for manifest in (root / "data" / stage).glob("*/manifest.json"):
            found[f"{stage}/{manifest.parent.name}"] = manifest.stat().st_mtime_ns
    return found


@dataclass
class Nights:
    """Data and report directories under ``root``, and the checkout copy ``code`` that runs on them."""

    root: Path
    code: Path

    def luigi(self, *args: str, mirrors=(BUNDLED,), code: Path | None = None) -> Run:
        """``luigi --module tasks <args> --local-scheduler`` in the checkout copy (first on PYTHONPATH)."""
        code = code or self.code
        cmd = [*luigi_exe(), "--module", "tasks", *args, "--local-scheduler",
               "--storage-data-dir", str(self.root / "data"), "--storage-report-dir", str(self.root / "reports"),
               "--FetchMNIST-mirrors", json.dumps(list(mirrors))]
        started = time.monotonic()
        done = subprocess.run(cmd, cwd=code, env={**os.environ, "PYTHONPATH": str(code)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
        run = Run(done.returncode, done.stdout, time.monotonic() - started)
        print(f"[{run.seconds:5.1f} s, exit {run.code}] luigi {' '.join(args)}")
        return run

    def night(self, date: str, *extra: str, **kwargs) -> Run:
        return self.luigi("Nightly", "--date", date, *SMALL, *extra, **kwargs)

    def dir(self, date: str) -> Path:
        return self.root / "reports" / "nightly" / date

    def record(self, date: str) -> dict:
        return json.loads((self.dir(date) / "nightly.json").read_text())

    def model(self) -> Path:
        (model,) = (self.root / "data" / "models").glob("*/model.pkl")
        return model


@dataclass
class FirstNight:
    nights: Nights
    run: Run


@pytest.fixture(scope="session")
def first_night(tmp_path_factory, mnist_dir) -> FirstNight:
    """The first night on empty directories: the whole small pipeline, then the night."""
    root = tmp_path_factory.mktemp("nightly")
    nights = Nights(root, checkout_copy(root / "code"))
    return FirstNight(nights, nights.night(FIRST))


@pytest.fixture
def nights(first_night, tmp_path) -> Nights:
    """A private copy of the first night's data and reports (modification times kept)."""
    assert first_night.run.code == 0, first_night.run.out[-4000:]
    for part in ("data", "reports"):
        shutil.copytree(first_night.nights.root / part, tmp_path / part, symlinks=True)
    return Nights(tmp_path, first_night.nights.code)


def test_first_night_runs_the_pipeline_and_writes_the_dated_record(first_night):
    nights, run = first_night.nights, first_night.run
    assert run.code == 0, run.out[-4000:]
    assert {"FetchMNIST", "TrainCNN", "EvaluateCNN", "MirrorHealth", "Nightly"} <= run.ran()
    folder = nights.dir(FIRST)
    assert {p.name for p in folder.iterdir()} == NIGHT_FILES
    rec = nights.record(FIRST)
    assert rec["status"] == "passed" and rec["failures"] == []
    assert rec["comparison"]["previous_date"] is None
    run_dir = nights.root / "reports" / rec["run_id"]
    metrics = json.loads((folder / "metrics.json").read_text())
    run_metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_accuracy"] == run_metrics["test_accuracy"] == rec["metrics"]["test_accuracy"]
    assert metrics["params_sha256"] == run_metrics["params_sha256"]
    assert metrics["nightly"] == {"date": FIRST, "comparison": rec["comparison"], "status": "passed"}
    assert 0.5 < metrics["test_accuracy"] < 1.0
    from pipeline.nightly.page import relocated_report  # the night's copy, its links to other runs moved
    assert (folder / "report.html").read_text() == relocated_report((run_dir / "report.html").read_text())
    # Mirror health: the only configured mirror serves all four files, verified against the pinned hashes.
    health = rec["mirror_health"]
    assert json.loads((folder / "mirrors.json").read_text()) == health
    bundled = health["mirrors"][BUNDLED]
    assert bundled["serves_all"] and {f["status"] for f in bundled["files"].values()} == {"verified"}
    # The fingerprint: code digest per task, the parameters, the content hash of every input file.
    fp = rec["fingerprint"]
    assert {"CleanData", "PrepareData", "TrainCNN", "EvaluateCNN"} <= set(fp["code"])
    assert fp["params"]["train_limit"] == 2000 and fp["params"]["preset"] == "simple"
    assert len(fp["data"]) == 4 and all(len(h) == 64 for h in fp["data"].values())
    assert 0 < rec["wall_seconds"] <= run.seconds + 1
    assert f"Night {FIRST} passed" in run.out


def test_second_night_with_nothing_changed_reuses_everything(nights):
    before, model_mtime = stamps(nights.root), nights.model().stat().st_mtime_ns
    run = nights.night("2026-01-02")
    assert run.code == 0, run.out[-4000:]
    assert run.ran() == {"MirrorHealth", "Nightly"}  # no stage ran: nothing was retrained
    assert stamps(nights.root) == before and nights.model().stat().st_mtime_ns == model_mtime
    comparison = nights.record("2026-01-02")["comparison"]
    assert comparison["previous_date"] == FIRST
    assert comparison["same_model"] is True
    assert comparison["why"] == {"code": [], "parameters": [], "data": []}
    assert comparison["accuracy"]["delta"] == 0.0
    low, high = comparison["accuracy"]["ci95"]
    assert low < 0 < high
    assert comparison["train_seconds_delta"] == 0.0
    assert comparison["mirror_changes"] == []
    assert "same model as the previous night" in run.out
    print(f"a night with nothing changed took {run.seconds:.1f} s")


def test_a_passed_night_asked_again_with_a_bad_parameter_is_refused(nights):
    run = nights.night(FIRST, "--epochs", "0")  # not taken for the night of that date that passed
    assert run.code == 35, run.out[-4000:]  # scheduling_error
    assert "epochs must be >= 1 (got 0)" in run.out
    assert nights.record(FIRST)["status"] == "passed"  # the night that passed is untouched


def test_recheck_retrains_in_a_scratch_directory_and_finds_the_same_model(nights):
    model_mtime = nights.model().stat().st_mtime_ns
    run = nights.night("2026-01-02", "--recheck", "true")
    assert run.code == 0, run.out[-4000:]
    rec = nights.record("2026-01-02")
    assert rec["recheck"]["identical"] is True
    (model,) = rec["recheck"]["members"]
    assert model["params_sha256"] == model["cached_params_sha256"] == rec["metrics"]["params_sha256"]
    assert rec["recheck"]["seconds"] > 0
    assert nights.model().stat().st_mtime_ns == model_mtime  # the cached model was not touched
    assert not list((nights.root / "data").glob(".recheck-*"))  # the scratch directory is gone
    assert rec["status"] == "passed"


def test_recheck_of_an_ensemble_retrains_every_member_on_the_threads_it_was_trained_on(nights):
    """The Quick start's shape (--ensemble 2 --workers 2) on a cached member 0 made by one worker:
    member 0 was trained on both cores, member 1 now on one (each worker's share), and the recheck
    retrains each on the thread count its manifest records, then compares it with that member."""
    run = nights.night("2026-01-02", "--ensemble", "2", "--workers", "2", "--recheck", "true")
    assert run.code == 0, run.out[-4000:]
    rec = nights.record("2026-01-02")
    models = sorted((nights.root / "data" / "models").glob("*/manifest.json"))
    manifests = [json.loads(m.read_text()) for m in models]
    threads = {int(m["params"].get("member", 0)): blas_threads(m["provenance"]) for m in manifests}
    cores = len(os.sched_getaffinity(0))
    said = [line for line in run.out.splitlines() if "BLAS thread" in line]
    assert threads == {0: cores, 1: max(1, cores // 2)}, said  # what each member really trained on
    members = rec["recheck"]["members"]
    assert [m["member"] for m in members] == [0, 1]
    assert [m["threads"] for m in members] == [threads[0], threads[1]]
    assert [m["cached_params_sha256"] for m in members] == [m["params_sha256"] for m in rec["metrics"]["members"]]
    assert all(m["params_sha256"] == m["cached_params_sha256"] for m in members)
    assert rec["recheck"]["identical"] is True and rec["status"] == "passed"
    page = (nights.dir("2026-01-02") / "nightly.html").read_text()
    assert "ensemble (its default &rarr; 2)" in page  # the first night left it at its (omitted) default
    assert f"member 1 <code>{members[1]['params_sha256'][:16]}</code> on {threads[1]} BLAS thread(s)." in page


def test_night_below_the_pinned_baseline_fails_with_the_reason(nights):
    run = nights.night("2026-01-02", "--nightly-baseline-accuracy", "0.99")
    assert run.code == 30, run.out[-4000:]  # task_failed
    rec = nights.record("2026-01-02")
    assert rec["status"] == "failed"
    (reason,) = rec["failures"]
    assert "below the pinned baseline 99.00% ([nightly] baseline_accuracy)" in reason
    assert reason in run.out  # in the log as well
    assert not (nights.dir("2026-01-02") / "metrics.json").exists()
    assert 'id="failures"' in (nights.dir("2026-01-02") / "nightly.html").read_text()


def test_accuracy_drop_against_the_previous_night_fails_and_says_why(nights):
    # A tiny learning rate: a real regression, retrained, against the first night's model.
    run = nights.night("2026-01-02", "--learning-rate", "0.00001")
    assert run.code == 30, run.out[-4000:]
    assert "TrainCNN" in run.ran()
    rec = nights.record("2026-01-02")
    assert rec["status"] == "failed"
    assert any("dropped below the previous night's" in f and f"({FIRST})" in f for f in rec["failures"])
    comparison = rec["comparison"]
    assert comparison["same_model"] is False
    assert comparison["why"] == {"code": [], "parameters": ["learning_rate"], "data": []}
    assert comparison["parameter_values"] == {"learning_rate": [0.002, 0.00001]}
    assert comparison["accuracy"]["delta"] < -0.002
    assert not (nights.dir("2026-01-02") / "metrics.json").exists()
    # A failed night is no baseline: the next night compares with the last night that passed.
    again = nights.night("2026-01-03")
    assert again.code == 0, again.out[-4000:]
    assert nights.record("2026-01-03")["comparison"]["previous_date"] == FIRST


def _mirror_with_one_wrong_file(folder: Path, wrong: str) -> Path:
    """A directory mirror serving the real MNIST, except ``wrong``: a valid gzip of other content."""
    folder.mkdir()
    for path in (REPO / BUNDLED).glob("*.gz"):
        (folder / path.name).symlink_to(path)
    content = bytearray(gzip.decompress((REPO / BUNDLED / wrong).read_bytes()))
    content[8] = (content[8] + 1) % 10  # one label changed: a plausible file, but not MNIST
    (folder / wrong).unlink()
    (folder / wrong).write_bytes(gzip.compress(bytes(content)))
    return folder


def test_mirror_serving_wrong_content_fails_the_night_naming_it(nights, tmp_path):
    bad = _mirror_with_one_wrong_file(tmp_path / "bad-mirror", "t10k-labels-idx1-ubyte.gz")
    run = nights.night("2026-01-02", mirrors=(BUNDLED, str(bad)))
    assert run.code == 30, run.out[-4000:]
    rec = nights.record("2026-01-02")
    assert rec["status"] == "failed"
    (reason,) = rec["failures"]
    assert str(bad) in reason and "t10k-labels-idx1-ubyte.gz" in reason and "pinned MNIST content" in reason
    files = rec["mirror_health"]["mirrors"][str(bad)]["files"]
    assert files["t10k-labels-idx1-ubyte.gz"]["status"] == "mismatch"
    assert {files[n]["status"] for n in files if n != "t10k-labels-idx1-ubyte.gz"} == {"verified"}
    assert reason in run.out
    assert not (nights.dir("2026-01-02") / "metrics.json").exists()
    # The bad mirror removed from the configuration, a rerun of that night checks the mirrors again and passes.
    rerun = nights.night("2026-01-02")
    assert rerun.code == 0, rerun.out[-4000:]
    assert "MirrorHealth" in rerun.ran() and nights.record("2026-01-02")["status"] == "passed"


def test_mirror_health_unreachable_public_mirror_and_an_http_mirror_over_two_nights(nights, mnist_dir):
    """An unreachable mirror listed first is recorded and harmless; an HTTP mirror is verified in full on
    its first night and, its validators unchanged, not downloaded again the next night."""
    closed = closed_port_url()
    with FaultServer(mnist_dir) as server:
        mirrors = (closed, server.url, BUNDLED)
        run = nights.night("2026-01-02", mirrors=mirrors)
        assert run.code == 0, run.out[-4000:]
        rec = nights.record("2026-01-02")
        health = rec["mirror_health"]
        assert health["failures"] == [] and rec["status"] == "passed"
        unreachable = health["mirrors"][closed]["files"]
        assert {f["status"] for f in unreachable.values()} == {"unreachable"}
        assert {f["detail"] for f in unreachable.values()} == {"connection refused"}
        served = health["mirrors"][server.url]
        assert served["serves_all"]
        assert {f["status"] for f in served["files"].values()} == {"verified"}
        assert all(f["range"] is True and f["etag"] for f in served["files"].values())
        first_hits = list(server.hits)
        full = [h for h in first_hits if h.range is None]
        assert sorted(h.path for h in full) == sorted(served["files"])  # each file downloaded in full once
        assert rec["comparison"]["mirror_changes"] == [f"{closed}: new mirror", f"{server.url}: new mirror"]  # in order

        run = nights.night("2026-01-03", mirrors=mirrors)
        assert run.code == 0, run.out[-4000:]
        rec = nights.record("2026-01-03")
        served = rec["mirror_health"]["mirrors"][server.url]
        assert {f["status"] for f in served["files"].values()} == {"unchanged"}
        assert {f["verified_on"] for f in served["files"].values()} == {"2026-01-02"}
        later = server.hits[len(first_hits):]
        assert len(later) == 4 and all(h.range is not None for h in later)  # probes only, no full download
        assert rec["comparison"]["mirror_changes"] == []
        page = (nights.dir("2026-01-03") / "nightly.html").read_text()
        assert "connection refused" in page and "unchanged" in page


def test_backfill_with_range_daily_base_writes_one_night_per_date_in_order(nights):
    # RangeDailyBase looks back only --days-back (default 100) days from now: --now pins "now" just after
    # the range, so the test does not depend on the clock (a real backfill further back gives --days-back).
    now = int(dt.datetime(2026, 2, 4, 6, 0, tzinfo=dt.timezone.utc).timestamp())
    backfill = ("RangeDailyBase", "--of", "Nightly", "--start", "2026-02-01", "--stop", "2026-02-04",
                "--now", str(now), "--of-params", json.dumps(OF_PARAMS))
    run = nights.luigi(*backfill)
    assert run.code == 0, run.out[-4000:]
    dates = ["2026-02-01", "2026-02-02", "2026-02-03"]  # --stop is exclusive
    assert sorted(p.name for p in (nights.root / "reports" / "nightly").iterdir()) == [FIRST, *dates]
    previous = FIRST
    for date in dates:
        assert {p.name for p in nights.dir(date).iterdir()} == NIGHT_FILES
        rec = nights.record(date)
        assert rec["status"] == "passed"
        assert rec["comparison"]["previous_date"] == previous  # oldest first, each against the one before
        assert rec["comparison"]["same_model"] is True
        previous = date
    assert "TrainCNN" not in run.ran()
    again = nights.luigi(*backfill)  # complete nights are not run again
    assert again.code == 0 and "Nightly" not in again.ran()


def test_code_change_to_evaluation_only_reevaluates_without_retraining(nights, tmp_path):
    """On a copy of the checkout whose evaluation code changed (semantically), the night
    re-evaluates and re-reports but does not retrain, and says which code changed."""
    code = checkout_copy(tmp_path / "edited", source=nights.code)  # the session's code, one edit apart
    stage = code / "pipeline" / "evaluate" / "stage.py"
    stage.write_text(stage.read_text() + "\n_EDITED_BY_A_TEST = 1  # a semantic change: the AST differs\n")
    model_mtime = nights.model().stat().st_mtime_ns
    run = nights.night("2026-01-02", code=code)
    assert run.code == 0, run.out[-4000:]
    assert "EvaluateCNN" in run.ran() and "TrainCNN" not in run.ran()
    assert nights.model().stat().st_mtime_ns == model_mtime
    comparison = nights.record("2026-01-02")["comparison"]
    assert "EvaluateCNN" in comparison["why"]["code"] and "TrainCNN" not in comparison["why"]["code"]
    assert comparison["same_model"] is True and comparison["accuracy"]["delta"] == 0.0
    print(f"a night after a change to the evaluation code took {run.seconds:.1f} s")


def test_the_nights_copy_of_a_report_links_to_the_same_runs(tmp_path):
    """A link to another run (../<run-id>/report.html) resolves to the same file from the night's folder."""
    from urllib.parse import urljoin

    from pipeline.nightly.page import relocated_report

    page = '<a href="../other-run/report.html">previous</a> <a href="#summary">top</a>'
    reports = tmp_path / "reports"
    original = (reports / "this-run" / "report.html").as_uri()
    copy = (reports / "nightly" / "2026-11-01" / "report.html").as_uri()
    moved = relocated_report(page)
    target = (reports / "other-run" / "report.html").as_uri()
    assert urljoin(original, re.search(r'href="([^"#]+)"', page).group(1)) == target
    assert urljoin(copy, re.search(r'href="([^"#]+)"', moved).group(1)) == target
    assert 'href="#summary"' in moved  # in-page links untouched


def test_the_readme_cron_line_writes_one_info_log_per_night(nights, tmp_path):
    """The README's cron line, run as cron runs it (`/bin/sh -c`, `\\%` unescaped), with its paths pointed
    at a project directory and a nightly.cfg here: tonight's log file gets the whole run at INFO level,
    and a second run the same night appends to the same file."""
    readme = (REPO / "README.md").read_text()
    line = re.search(r"^30 2 \* \* \*  (cd /srv/mnist-pipeline .+)$", readme, re.M).group(1)
    project = tmp_path / "project"
    project.mkdir()
    for part in ("pipeline", "tasks", "luigi.cfg", "data"):
        (project / part).symlink_to(nights.code / part)
    (project / "logs").mkdir()
    config = tmp_path / "nightly.cfg"
    config.write_text(f"[storage]\ndata_dir = {nights.root / 'data'}\nreport_dir = {nights.root / 'reports'}\n"
                      f'[FetchMNIST]\nmirrors = ["{BUNDLED}"]\n'
                      "[Nightly]\n" + "".join(f"{k} = {v}\n" for k, v in OF_PARAMS.items()))
    command = (line.replace("\\%", "%")  # cron's escape of %
               .replace("/srv/mnist-pipeline", str(project))
               .replace("/etc/mnist-pipeline/nightly.cfg", str(config))
               .replace(".venv/bin/luigi", " ".join(luigi_exe())))
    env = {**os.environ, "PYTHONPATH": str(project)}
    env.pop("LUIGI_CONFIG_PATH", None)
    for _ in range(2):
        done = subprocess.run(["/bin/sh", "-c", command], env=env, timeout=600)
        assert done.returncode == 0
    today = dt.date.today().isoformat()
    assert [p.name for p in (project / "logs").iterdir()] == [f"nightly-{today}.log"]
    log = (project / "logs" / f"nightly-{today}.log").read_text()
    assert f"Night {today} passed" in log and "INFO: " in log and "DEBUG: " not in log
    assert log.count("===== Luigi Execution Summary =====") == 4  # two runs, each summary opened and closed
    assert "-k2-" in nights.record(today)["run_id"]  # the line's --ensemble 2 (the Quick start's) reached the night
