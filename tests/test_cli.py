"""The ``mnist-pipeline`` console script, driven as a user drives it, on the real outputs of two small runs.

The pipeline runs twice (seeds 3 and 4) through the real ``luigi`` command into a
temporary directory; every subcommand then runs in a subprocess and is judged on
its printed output and exit code. Tests that change files work on a copy.
McNemar's test is checked against slow, obviously correct references.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline.inspect.mcnemar import (CHI2, EXACT, EXACT_BELOW, chi2_sf_1df, chi2_statistic, discordant_counts,
                                      exact_p_value, mcnemar)

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO / "data" / "mirror" / "mnist"
RUN = ["--train-limit", "2000", "--epochs", "1", "--preset", "simple"]
SEEDS = (3, 4)
TASKS = ["RunPipeline", "RunIndex", "RenderReport", "FetchMNIST", "CleanData", "ExploreData", "PrepareData",
         "TrainCNN", "EvaluateCNN"]


# ---------------------------------------------------------------- McNemar's test against references

def reference_exact_p(b: int, c: int) -> Fraction:
    """Enumerate all 2^n ways the n discordant images can fall to A or B (each 1/2): the share of
    outcomes at least as far from an even split as the one observed."""
    n = b + c
    observed = abs(b - n / 2)
    extreme = sum(1 for outcome in range(2 ** n) if abs(bin(outcome).count("1") - n / 2) >= observed)
    return Fraction(extreme, 2 ** n)


def reference_chi2_sf_1df(x: float, steps: int = 200_000) -> float:
    """P(Z^2 > x) = 1 - P(|Z| <= sqrt(x)) with the normal density integrated by Simpson's rule."""
    r = math.sqrt(x)
    h = r / steps
    f = [math.exp(-(i * h) ** 2 / 2) / math.sqrt(2 * math.pi) for i in range(steps + 1)]
    inner = h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))
    return 1 - 2 * inner


@pytest.mark.parametrize("n", range(0, 15))
def test_exact_p_value_matches_enumeration(n):
    for b in range(n + 1):
        assert exact_p_value(b, n - b) == pytest.approx(float(reference_exact_p(b, n - b)), abs=1e-15)


def test_exact_p_value_known_values():
    assert exact_p_value(0, 5) == 0.0625  # 2 * (1/2)^5
    assert exact_p_value(1, 9) == 0.021484375  # 2 * (1 + 10) / 1024
    assert exact_p_value(9, 1) == 0.021484375
    assert exact_p_value(7, 13) == pytest.approx(0.26317596435546875, abs=1e-15)
    assert exact_p_value(6, 6) == 1.0 and exact_p_value(0, 0) == 1.0


@pytest.mark.parametrize("x", [0.01, 0.5, 1.0, 3.841458820694124, 9.025, 20.0])
def test_chi2_tail_matches_integrated_normal(x):
    assert chi2_sf_1df(x) == pytest.approx(reference_chi2_sf_1df(x), abs=1e-9)


def test_chi2_known_values():
    assert chi2_sf_1df(3.841458820694124) == pytest.approx(0.05, abs=1e-12)  # the 95% quantile
    assert chi2_statistic(10, 30) == pytest.approx(9.025)  # (|10 - 30| - 1)^2 / 40
    result = mcnemar(10, 30)
    assert result.method == CHI2 and result.statistic == pytest.approx(9.025)
    assert result.p_value == pytest.approx(0.0026631192591385, rel=1e-9)  # statsmodels mcnemar(exact=False)
    assert mcnemar(85, 115).p_value == pytest.approx(0.0403049743625408, rel=1e-9)
    assert chi2_statistic(40, 40) == 0.0 and mcnemar(40, 40).p_value == 1.0  # correction never goes below 0


def test_method_switches_at_the_threshold_and_agrees_with_exact_for_large_counts():
    assert mcnemar(10, EXACT_BELOW - 11).method == EXACT
    assert mcnemar(10, EXACT_BELOW - 10).method == CHI2
    assert mcnemar(5, 3).statistic is None
    for b, c in [(85, 115), (300, 360), (40, 70)]:  # the continuity-corrected chi-square approximates the exact p
        assert mcnemar(b, c).p_value == pytest.approx(exact_p_value(b, c), rel=0.05)
    with pytest.raises(ValueError):
        mcnemar(-1, 3)


def test_discordant_counts_and_significance():
    a = np.array([1, 1, 1, 0, 0, 1, 0], dtype=bool)
    b = np.array([1, 0, 0, 1, 0, 1, 1], dtype=bool)
    assert discordant_counts(a, b) == (2, 2)
    result = mcnemar(0, 12)
    assert result.discordant == 12 and result.significant(0.05) and not result.significant(0.0001)
    with pytest.raises(ValueError):
        discordant_counts(a, b[:3])


def test_pick_follows_keys_that_hold_dots():
    from pipeline.inspect.select import KeyNotFound, pick

    state = {"params": {"0.conv.W": np.zeros((2, 1, 3, 3)), "4.dense.b": np.ones(3)}, "spec": [{"type": "conv"}]}
    assert pick(state, "params.0.conv.W").shape == (2, 1, 3, 3)
    assert pick(state, "spec.0.type") == "conv"
    with pytest.raises(KeyNotFound, match="did you mean 0.conv.W"):
        pick(state, "params.0.conv.X")


def test_compare_pairs_by_source_index_and_counts_per_class():
    from pipeline.inspect.compare import compare_runs

    labels = np.array([0, 1, 1, 2, 2, 2])
    a_pred = np.array([0, 1, 0, 2, 2, 1])  # right on rows 0, 1, 3, 4
    b_pred = np.array([0, 1, 1, 2, 1, 2])  # right on rows 0, 1, 2, 3, 5
    order = np.array([5, 3, 0, 1, 4, 2])  # B scored the same images in another order
    pa = {"labels": labels, "predicted": a_pred, "source_index": np.arange(6) + 100}
    pb = {"labels": labels[order], "predicted": b_pred[order], "source_index": (np.arange(6) + 100)[order]}
    ra = {"run_id": "a", "test_accuracy": 4 / 6, "parameters": {"seed": 1, "ensemble": 1}, "params_sha256": "x"}
    rb = {"run_id": "b", "test_accuracy": 5 / 6, "parameters": {"seed": 2}, "params_sha256": "y", "ensemble": 1}
    out = compare_runs(ra, rb, pa, pb, parameter_names={"ensemble"})
    assert out["parameters"] == [{"name": "ensemble", "a": 1, "b": None}, {"name": "seed", "a": 1, "b": 2}]
    assert [m["name"] for m in out["metrics"]] == ["test_accuracy"]
    assert (out["mcnemar"]["b"], out["mcnemar"]["c"], out["mcnemar"]["n_paired"]) == (1, 2, 6)
    assert out["mcnemar"]["p_value"] == 1.0 and "not significant" in out["verdict"]
    recall = {r["class"]: (r["recall_a"], r["recall_b"]) for r in out["per_class"]}
    assert recall == {0: (1.0, 1.0), 1: (0.5, 1.0), 2: (pytest.approx(2 / 3), pytest.approx(2 / 3))}
    assert not out["same_model"]


# ---------------------------------------------------------------- the command on two real runs

def _command() -> list[str]:
    script = shutil.which("mnist-pipeline") or shutil.which("mnist-pipeline", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.fail("the console script mnist-pipeline is not installed: pip install -e .")
    return [script]


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``mnist-pipeline --data-dir root/data --report-dir root/reports ARGS`` from the repository."""
    return subprocess.run([*_command(), "--data-dir", str(root / "data"), "--report-dir", str(root / "reports"),
                           *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def run_flags(seed: int) -> list[str]:
    return [*RUN, "--seed", str(seed)]


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Path:
    """Two real runs (seeds 3 then 4) into one data and report directory; yields their root."""
    if not (MIRROR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"the bundled MNIST copy {MIRROR} is missing")
    root = tmp_path_factory.mktemp("cli")
    for seed in SEEDS:
        command = ["luigi", "--module", "tasks", "RunPipeline", "--local-scheduler", *run_flags(seed),
                   "--storage-data-dir", str(root / "data"), "--storage-report-dir", str(root / "reports")]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"the pipeline run failed ({done.returncode}):\n{done.stderr[-4000:]}"
        time.sleep(1.1)  # metrics.json's `created` has one-second resolution: keep the two runs ordered
    return root


@pytest.fixture
def copy(runs, tmp_path) -> Path:
    """A copy of both runs (modification times kept, so staleness is as in the original) to change freely."""
    shutil.copytree(runs, tmp_path / "copy", symlinks=True)
    return tmp_path / "copy"


def nodes(tree: dict) -> dict[str, dict]:
    """{task family: first node} over a status tree."""
    found = {}

    def visit(node):
        found.setdefault(node["task"], node)
        for child in node["requires"]:
            visit(child)

    visit(tree)
    return found


def only_dir(root: Path, stage: str, seed: int | None = None) -> Path:
    dirs = [p for p in (root / "data" / stage).iterdir() if p.is_dir() and not p.name.endswith(".checkpoints")
            and (seed is None or f"-s{seed}-" in p.name)]
    assert len(dirs) == 1, dirs
    return dirs[0]


def explore_dir(root: Path, seed: int) -> Path:
    dirs = [p for p in (root / "data" / "explore").iterdir() if p.is_dir() and not p.name.startswith(".")
            and json.loads((p / "manifest.json").read_text())["params"]["seed"] == str(seed)]
    assert len(dirs) == 1
    return dirs[0]


def run_ids(root: Path) -> dict[int, str]:
    ids = {}
    for metrics in (root / "reports").glob("*/metrics.json"):
        if not metrics.parent.is_symlink():
            ids[json.loads(metrics.read_text())["seed"]] = metrics.parent.name
    return ids


@pytest.mark.slow
def test_status_shows_every_task_complete(runs):
    text = ok(cli(runs, "status", *run_flags(3)))
    for family in TASKS:
        assert f"{family}  COMPLETE" in text, text
    assert "STALE" not in text and "PENDING" not in text
    tree = json.loads(ok(cli(runs, "status", *run_flags(4), "--format", "json")))
    assert {name: node["status"] for name, node in nodes(tree["tree"]).items()} == {t: "COMPLETE" for t in TASKS}
    assert tree["counts"] == {"COMPLETE": len(TASKS)}


@pytest.mark.slow
def test_status_names_why_a_task_would_run(copy):
    prepared, cleaned = only_dir(copy, "processed", 3), only_dir(copy, "interim")
    later = time.time() + 60
    os.utime(cleaned / "manifest.json", (later, later))  # the cleaned data look rebuilt after everything else
    shutil.rmtree(only_dir(copy, "models", 3))  # the model is gone
    manifest = json.loads((explore_dir(copy, 3) / "manifest.json").read_text())
    manifest["params"]["pca_sample"] = "2999"  # made with another setting than the one asked for
    (explore_dir(copy, 3) / "manifest.json").write_text(json.dumps(manifest))

    result = cli(copy, "status", *run_flags(3), "--format", "json")
    tree = nodes(json.loads(ok(result))["tree"])
    assert tree["CleanData"]["status"] == "COMPLETE"
    assert tree["PrepareData"]["status"] == "STALE"
    assert any(r.startswith("newer input: CleanData") for r in tree["PrepareData"]["reasons"])
    assert tree["TrainCNN"]["status"] == "PENDING" and tree["TrainCNN"]["reasons"] == ["missing output"]
    assert tree["EvaluateCNN"]["status"] == "STALE"
    assert "input will be rebuilt: TrainCNN is PENDING" in tree["EvaluateCNN"]["reasons"]
    assert "changed parameters: pca_sample" in tree["ExploreData"]["reasons"]
    assert tree["FetchMNIST"]["status"] == "COMPLETE"
    text = ok(cli(copy, "status", *run_flags(3)))
    assert "TrainCNN  PENDING" in text and "- missing output" in text and "- newer input: CleanData" in text
    assert str(prepared) in text
    # the other run does not share the deleted model, but shares the touched input
    other = nodes(json.loads(ok(cli(copy, "status", *run_flags(4), "--format", "json")))["tree"])
    assert other["TrainCNN"]["status"] == "STALE" and other["PrepareData"]["status"] == "STALE"


@pytest.mark.slow
def test_status_rejects_unknown_flags(runs):
    result = cli(runs, "status", "--epochs", "1", "--epohcs", "2")
    assert result.returncode == 1
    assert "unrecognized arguments: --epohcs 2" in result.stderr and "did you mean --epochs" in result.stderr


@pytest.mark.slow
def test_ls_lists_every_output_with_integrity_ok(runs):
    text = ok(cli(runs, "ls"))
    listing = json.loads(ok(cli(runs, "ls", "--format", "json")))
    entries = listing["entries"]
    assert listing["failed"] == 0 and all(e["integrity"] in ("ok", "-") for e in entries)
    by_task = {}
    for e in entries:
        by_task.setdefault(e["task"], []).append(e)
    assert {t: len(v) for t, v in by_task.items() if t in TASKS} == {
        "FetchMNIST": 1, "CleanData": 1, "PrepareData": 2, "ExploreData": 2, "TrainCNN": 2, "EvaluateCNN": 2,
        "RenderReport": 2}
    for e in entries:
        if e["kind"] in ("output", "report"):
            assert e["created"] and e["bytes"] == sum(f.stat().st_size for f in Path(e["path"]).iterdir())
    prep = {e["key_params"]["seed"] for e in by_task["PrepareData"]}
    assert prep == {"3", "4"}
    for run_id in run_ids(runs).values():
        assert run_id in text
    assert "integrity ok" in text and "FAILED" not in text


@pytest.mark.slow
def test_ls_names_the_file_that_fails_its_hash(copy):
    data = only_dir(copy, "processed", 3) / "data.pkl"
    with open(data, "r+b") as fh:  # flip one byte in the middle of the pixels
        fh.seek(data.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
    result = cli(copy, "ls")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "1 FAILED" in result.stdout
    assert f"{data.parent}: data.pkl changed after it was written" in result.stdout
    entries = json.loads(cli(copy, "ls", "--format", "json").stdout)["entries"]
    failed = [e for e in entries if e["integrity"] == "FAILED"]
    assert [e["path"] for e in failed] == [str(data.parent)]


@pytest.mark.slow
def test_show_summarises_prepared_data(runs):
    path = only_dir(runs, "processed", 3) / "data.pkl"
    text = ok(cli(runs, "show", str(path)))
    assert "x_train: ndarray (1800, 1, 28, 28) float32" in text
    assert "x_val: ndarray (200, 1, 28, 28) float32" in text
    assert "x_test: ndarray (10000, 1, 28, 28) float32  min 0  max 1" in text
    assert "y_test: ndarray (10000,) int64  min 0  max 9" in text
    assert "method: str 'minmax'" in text and f"verified against {path.parent / 'manifest.json'}" in text
    # relative to the data directory, and one key
    key = ok(cli(runs, "show", str(path.relative_to(runs / "data")), "--key", "normalization.std"))
    assert key.splitlines()[-1].startswith("float 0.30")


@pytest.mark.slow
def test_show_a_task_output_by_its_parameters(runs):
    text = ok(cli(runs, "show", "TrainCNN", *run_flags(3)))
    assert str(only_dir(runs, "models", 3) / "model.pkl") in text
    assert "saved model" in text and "Total params:" in text and "0.conv (Conv2D)" in text
    assert "0.conv.W: ndarray (30, 1, 5, 5) float32" in text
    per_class = ok(cli(runs, "show", "EvaluateCNN", *run_flags(3), "--file", "per_class.pkl"))
    assert "DataFrame 10 rows x 4 columns" in per_class and "precision (float64), recall (float64)" in per_class
    summary = json.loads(ok(cli(runs, "show", "EvaluateCNN", *run_flags(3), "--key", "summary.per_class.3"))
                         .split("\n", 1)[1])
    assert set(summary) == {"f1", "precision", "recall", "support"} and summary["support"] == 1010
    missing = cli(runs, "show", "TrainCNN", *run_flags(5))
    assert missing.returncode == 1 and "has no output yet" in missing.stderr


@pytest.mark.slow
def test_show_refuses_a_tampered_pickle_and_never_runs_it(copy, tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evaluation = only_dir(copy, "eval", 3)
    predictions = evaluation / "predictions.pkl"
    # the payload is live: a plain unpickler would run it
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                   input=pickle.dumps(Payload()), check=True)
    assert marker.exists()
    marker.unlink()

    with open(predictions, "ab") as fh:  # appended after the real content: the hash no longer matches
        pickle.dump(Payload(), fh)
    result = cli(copy, "show", str(predictions))
    assert result.returncode == 2 and str(predictions) in result.stderr
    assert "changed after it was written" in result.stderr and f"delete {evaluation}" in result.stderr
    assert result.stdout == ""

    from pipeline import store

    predictions.write_bytes(pickle.dumps(Payload()))  # replaced, and the manifest resealed to match
    store.write_manifest(evaluation, json.loads((evaluation / "manifest.json").read_text()))
    result = cli(copy, "show", str(predictions))
    assert result.returncode == 2 and str(predictions) in result.stderr and "not plain data" in result.stderr

    foreign = tmp_path / "foreign.pkl"  # a pickle no manifest vouches for
    foreign.write_bytes(pickle.dumps(Payload()))
    result = cli(copy, "show", str(foreign))
    assert result.returncode == 2 and str(foreign) in result.stderr and "not opened" in result.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_export_round_trips_through_numpy_and_pandas(runs, tmp_path):
    import pandas as pd

    from pipeline import store

    evaluation = only_dir(runs, "eval", 3)
    predictions = store.read_verified_pickle(evaluation / "predictions.pkl")
    out = ok(cli(runs, "show", str(evaluation / "predictions.pkl"), "--export", str(tmp_path / "p.npz")))
    assert "wrote" in out
    with np.load(tmp_path / "p.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(predictions)
        for key, value in predictions.items():
            np.testing.assert_array_equal(npz[key], value)
            assert npz[key].dtype == value.dtype

    table = store.read_verified_pickle(evaluation / "per_class.pkl")
    ok(cli(runs, "show", str(evaluation / "per_class.pkl"), "--export", str(tmp_path / "per_class.csv")))
    back = pd.read_csv(tmp_path / "per_class.csv", index_col=0)
    assert list(back.columns) == list(table.columns) and back.index.name == table.index.name
    np.testing.assert_allclose(back.to_numpy(), table.to_numpy(), rtol=1e-12)

    data = only_dir(runs, "processed", 3) / "data.pkl"
    ok(cli(runs, "show", str(data), "--key", "y_test", "--export", str(tmp_path / "y.csv")))
    np.testing.assert_array_equal(pd.read_csv(tmp_path / "y.csv")["y_test"].to_numpy(),
                                  store.read_verified_pickle(data)["y_test"])
    bad = cli(runs, "show", str(data), "--key", "normalization", "--export", str(tmp_path / "n.csv"))
    assert bad.returncode == 1 and ".csv needs a DataFrame" in bad.stderr and not (tmp_path / "n.csv").exists()


@pytest.mark.slow
def test_diff_latest_previous(runs):
    from pipeline import store

    ids = run_ids(runs)
    text = ok(cli(runs, "diff", "previous", "latest"))
    assert f"A: {ids[3]}" in text and f"B: {ids[4]}" in text
    assert "seed       3  4" in text
    assert "McNemar's test on 10,000 paired test images" in text and "p = " in text and "Verdict:" in text
    result = json.loads(ok(cli(runs, "diff", "previous", "latest", "--format", "json")))
    assert result["parameters"] == [{"name": "seed", "a": 3, "b": 4}]
    metrics = {m["name"]: m for m in result["metrics"]}
    a = json.loads((runs / "reports" / ids[3] / "metrics.json").read_text())
    b = json.loads((runs / "reports" / ids[4] / "metrics.json").read_text())
    assert metrics["test_accuracy"]["delta"] == pytest.approx(b["test_accuracy"] - a["test_accuracy"])
    # McNemar recomputed here from the verified predictions, with the reference tail
    pa = store.read_verified_pickle(only_dir(runs, "eval", 3) / "predictions.pkl")
    pb = store.read_verified_pickle(only_dir(runs, "eval", 4) / "predictions.pkl")
    right_a, right_b = pa["predicted"] == pa["labels"], pb["predicted"] == pb["labels"]
    bb, cc = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    test = result["mcnemar"]
    assert (test["b"], test["c"], test["n_paired"]) == (bb, cc, 10000)
    expected = reference_chi2_sf_1df((abs(bb - cc) - 1) ** 2 / (bb + cc)) if bb + cc >= EXACT_BELOW \
        else float(reference_exact_p(bb, cc))
    assert test["p_value"] == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert test["significant"] == (test["p_value"] < 0.05)
    assert ("is significant" in result["verdict"]) == test["significant"]
    assert [r["class"] for r in result["per_class"]] == list(range(10))
    for r in result["per_class"]:
        truth = pa["labels"] == r["class"]
        assert r["recall_a"] == pytest.approx(np.mean(pa["predicted"][truth] == r["class"]))
        assert r["recall_delta"] == pytest.approx(r["recall_b"] - r["recall_a"])
    same = json.loads(ok(cli(runs, "diff", ids[3], ids[3], "--format", "json")))
    assert same["parameters"] == [] and same["mcnemar"]["p_value"] == 1.0 and same["same_model"]


@pytest.mark.slow
def test_unknown_run_lists_the_nearest(runs):
    ids = run_ids(runs)
    wrong = ids[3].replace("-s3-", "-s5-")
    result = cli(runs, "diff", wrong, "latest")
    assert result.returncode == 1 and f"no run {wrong!r}" in result.stderr
    assert "nearest: " in result.stderr and ids[3] in result.stderr.split("nearest: ")[1]


@pytest.mark.slow
def test_missing_directories_say_where_they_looked(tmp_path):
    result = cli(tmp_path / "nowhere", "ls")
    assert result.returncode == 1 and f"no data directory at {tmp_path / 'nowhere' / 'data'}" in result.stderr
    result = cli(tmp_path / "nowhere", "diff", "previous", "latest")
    assert result.returncode == 1 and f"no report directory at {tmp_path / 'nowhere' / 'reports'}" in result.stderr


def _tree_bytes(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() or p.is_symlink())


@pytest.mark.slow
def test_gc_plans_then_frees_what_the_kept_run_does_not_use(copy):
    ids = run_ids(copy)
    before = _tree_bytes(copy)
    old_only = [only_dir(copy, "processed", 3), explore_dir(copy, 3), only_dir(copy, "models", 3),
                only_dir(copy, "eval", 3)]
    plan = json.loads(ok(cli(copy, "gc", "--keep", "1", "--format", "json")))
    assert plan["kept_runs"] == [ids[4]] and plan["removed"] is False
    assert sorted(d["path"] for d in plan["remove"]) == sorted(str(p) for p in old_only)
    assert plan["bytes"] == sum(_tree_bytes(p) for p in old_only)
    text = ok(cli(copy, "gc", "--keep", "1"))
    assert f"({plan['bytes']:,} bytes)" in text and "run again with --yes" in text
    assert _tree_bytes(copy) == before and all(p.exists() for p in old_only)  # nothing deleted without --yes

    text = ok(cli(copy, "gc", "--keep", "1", "--yes"))
    assert "Freed" in text
    assert not any(p.exists() for p in old_only)
    assert before - _tree_bytes(copy) == plan["bytes"]
    assert (copy / "data" / "raw" / "mnist" / "manifest.json").exists()
    assert (copy / "reports" / ids[3] / "report.html").exists()  # reports are kept unless --reports
    kept = nodes(json.loads(ok(cli(copy, "status", *run_flags(4), "--format", "json")))["tree"])
    assert {n["status"] for n in kept.values()} == {"COMPLETE"}
    dropped = nodes(json.loads(ok(cli(copy, "status", *run_flags(3), "--format", "json")))["tree"])
    assert dropped["TrainCNN"]["status"] == "PENDING" and dropped["CleanData"]["status"] == "COMPLETE"

    assert "Nothing to remove." in ok(cli(copy, "gc", "--keep", "1"))
    ok(cli(copy, "gc", "--keep", "1", "--reports", "--yes"))
    assert not (copy / "reports" / ids[3]).exists() and (copy / "reports" / ids[4] / "report.html").exists()
    history = (copy / "reports" / "history.csv").read_text()
    assert ids[4] in history and ids[3] not in history
    assert ok(cli(copy, "ls")).count("RenderReport") == 1


@pytest.mark.slow
def test_ls_and_gc_know_checkpoints_and_debris(copy):
    from pipeline.store.debris import owner_tag
    from pipeline.train.checkpoints import Checkpoints

    old_model, new_model = only_dir(copy, "models", 3), only_dir(copy, "models", 4)
    for model in (old_model, new_model):  # what a killed training run leaves beside its model
        Checkpoints(model.with_name(model.name + ".checkpoints"), "fingerprint").save(1, {"epoch": 1})
    dead = owner_tag().replace(f"~{os.getpid()}~", "~4194000~")  # a pid no process has
    debris = copy / "data" / "processed" / f".prep-minmax-s9-0000000000{dead}x.staging"
    debris.mkdir()
    (debris / "data.pkl").write_bytes(b"half written")
    live = copy / "data" / "processed" / f".prep-minmax-s8-0000000000{owner_tag()}x.staging"
    live.mkdir()  # owned by this (running) process

    listing = json.loads(ok(cli(copy, "ls", "--format", "json")))
    kinds = {Path(e["path"]).name: (e["kind"], e["integrity"]) for e in listing["entries"]}
    assert kinds[old_model.name + ".checkpoints"] == ("checkpoints", "ok")
    assert kinds[debris.name][0] == "debris" and kinds[live.name][0] == "debris"
    text = ok(cli(copy, "ls"))
    assert f"debris {debris}: left by a process that no longer runs" in text

    plan = json.loads(ok(cli(copy, "gc", "--format", "json")))
    removed = {Path(d["path"]).name for d in plan["remove"]}
    assert {old_model.name + ".checkpoints", debris.name} <= removed
    assert new_model.name + ".checkpoints" not in removed and live.name not in removed
    ok(cli(copy, "gc", "--yes"))
    assert not debris.exists() and live.exists() and not old_model.with_name(old_model.name + ".checkpoints").exists()
    assert new_model.with_name(new_model.name + ".checkpoints").exists()
