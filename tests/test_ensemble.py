"""Ensembles: the averaging against a float64 loop, one member equal to the single model exactly,
the task ids of single-model runs untouched, and a real ensemble trained by two worker processes
sharing one luigid."""
from __future__ import annotations

import collections
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluate.ensemble import Member, average_probabilities, ensemble_digest, ensemble_stage
from test_central_scheduler import _scheduler_tasks, luigid  # noqa: F401  (a real luigid, as a fixture)

REPO = Path(__file__).resolve().parents[1]


def _probs(k: int, n: int = 200, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        p = rng.dirichlet(np.full(10, 0.3), size=n)
        out.append(p.astype(np.float32))
    return out


# --- the averaging -------------------------------------------------------------------------------

def test_one_member_is_averaged_to_itself_bit_for_bit():
    (p,) = _probs(1)
    avg = average_probabilities([p])
    assert avg.dtype == np.float32 and avg.shape == p.shape
    assert avg.tobytes() == p.tobytes()
    assert ensemble_digest(["ab" * 32]) == "ab" * 32  # a one-model ensemble is named like the model


def test_average_is_the_mean_of_the_members_computed_in_float64():
    members = _probs(5, seed=1)
    avg = average_probabilities(members)
    expected = np.zeros(members[0].shape, dtype=np.float64)
    for p in members:  # the obvious reference: a loop in float64
        expected += p.astype(np.float64)
    expected /= len(members)
    np.testing.assert_array_equal(avg, expected.astype(np.float32))
    np.testing.assert_allclose(avg.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(average_probabilities(members[::-1]), avg, rtol=0, atol=1e-7)
    # the argmax of the mean is not the vote of the members' argmaxes: it weighs their confidence
    a = np.array([[0.6, 0.4]], np.float32)
    b = np.array([[0.45, 0.55]], np.float32)
    assert average_probabilities([a, b, b]).argmax() == 0


def test_bad_members_are_refused():
    with pytest.raises(ValueError, match="at least one member"):
        average_probabilities([])
    with pytest.raises(ValueError, match="one shape"):
        average_probabilities([np.zeros((3, 10), np.float32), np.zeros((4, 10), np.float32)])


def test_ensemble_digest_depends_on_every_member_and_their_order():
    a, b = "a" * 64, "b" * 64
    assert ensemble_digest([a, b]) == hashlib.sha256(f"{a}\n{b}".encode()).hexdigest()
    assert ensemble_digest([a, b]) != ensemble_digest([b, a]) != ensemble_digest([a, a])


# --- the stage -------------------------------------------------------------------------------------

def _members(k: int):
    """k untrained 'simple' networks (seeds 10, 11, ...) with the training summaries the stage reads."""
    from pipeline.nn import build_model, model_state, preset_spec, sha256_arrays

    out = []
    for i in range(k):
        model = build_model(preset_spec("simple"), (1, 28, 28), np.random.default_rng(10 + i))
        training = {"seed": 10 + i, "best_epoch": 3, "epochs_run": 4, "best_val_accuracy": 0.5 + i / 100,
                    "train_seconds": 2.0 + i, "params_sha256": sha256_arrays(model.parameters())}
        out.append(Member(model_state=model_state(model), training=training))
    return out


def _data(n_test: int = 96, n_val: int = 48):
    rng = np.random.default_rng(0)
    return {"x_test": rng.random((n_test, 1, 28, 28), dtype=np.float32), "y_test": rng.integers(0, 10, n_test),
            "test_source_index": np.arange(n_test, dtype=np.int64) + 500,
            "x_val": rng.random((n_val, 1, 28, 28), dtype=np.float32), "y_val": rng.integers(0, 10, n_val)}


def test_a_one_member_ensemble_is_the_single_model_evaluation_exactly():
    from pipeline.evaluate.stage import evaluate_stage
    from pipeline.nn import model_from_state

    (member,) = _members(1)
    data = _data()
    single = evaluate_stage(model_from_state(member.model_state), data["x_test"], data["y_test"],
                            data["test_source_index"])
    ensemble = ensemble_stage([member], data)
    assert ensemble.title == single.title == "Evaluation"
    assert json.dumps(ensemble.summary, sort_keys=True) == json.dumps(single.summary, sort_keys=True)
    assert ensemble.headline == single.headline
    assert [(f.name, f.title, f.caption) for f in ensemble.figures] == [(f.name, f.title, f.caption)
                                                                         for f in single.figures]
    for a, b in zip(ensemble.tables, single.tables):
        assert a.name == b.name
        pd.testing.assert_frame_equal(a.frame, b.frame)
    assert set(ensemble.artifacts) == set(single.artifacts) == {"predictions", "mistake_images", "filters",
                                                               "feature_maps"}
    for name in single.artifacts:
        for key, value in single.artifacts[name].items():
            np.testing.assert_array_equal(ensemble.artifacts[name][key], value)


def test_ensemble_stage_scores_the_mean_of_its_members(tmp_path):
    from pipeline.nn import model_from_state
    from pipeline.result import write_result
    from pipeline.store import read_json

    members = _members(3)
    data = _data()
    calls = []
    result = ensemble_stage(members, data, progress=lambda f, m: calls.append(f))
    assert calls == sorted(calls) and calls[-1] == 1.0
    own = [model_from_state(m.model_state).predict_proba(data["x_test"]) for m in members]
    own_val = [model_from_state(m.model_state).predict_proba(data["x_val"]) for m in members]
    mean = np.mean(np.stack(own).astype(np.float64), axis=0)
    s = result.summary
    assert s["ensemble"] == 3 and result.title == "Evaluation: ensemble of 3 members"
    assert s["test_accuracy"] == float((mean.argmax(1) == data["y_test"]).mean())
    assert s["n_errors"] == int((mean.argmax(1) != data["y_test"]).sum())
    val_mean = np.mean(np.stack(own_val).astype(np.float64), axis=0)
    assert s["val_accuracy"] == float((val_mean.argmax(1) == data["y_val"]).mean())
    np.testing.assert_array_equal(result.artifacts["predictions"]["probabilities"], mean.astype(np.float32))
    stacked = result.artifacts["member_predictions"]
    np.testing.assert_array_equal(stacked["probabilities"], np.stack(own))
    np.testing.assert_array_equal(stacked["seeds"], [10, 11, 12])
    shas = [m.training["params_sha256"] for m in members]
    assert stacked["params_sha256"] == shas and s["model_params_sha256"] == ensemble_digest(shas)
    for i, row in enumerate(s["members"]):
        assert row["member"] == i and row["seed"] == 10 + i and row["params_sha256"] == shas[i]
        assert row["test_accuracy"] == float((own[i].argmax(1) == data["y_test"]).mean())
        assert row["best_val_accuracy"] == members[i].training["best_val_accuracy"]
    # the members table leads, one row per member and the ensemble last
    table = result.tables[0]
    assert table.name == "members" and list(table.frame["member"]) == [0, 1, 2, "ensemble"]
    assert table.frame["test_accuracy"].iloc[-1] == s["test_accuracy"]
    assert table.frame["train_seconds"].iloc[-1] == 2.0 + 3.0 + 4.0
    assert table.frame["params_sha256"].iloc[-1] == s["model_params_sha256"][:12]
    assert [f.name for f in result.figures] == ["members", "confusion", "per_class", "reliability", "mistakes",
                                                "filters", "feature_maps"]
    assert "The ensemble of 3 members" in result.figures[0].caption
    assert result.figures[-1].caption.startswith("Member 0 (seed 10): ")
    assert dict(result.headline)["Members"] == "3 (seeds 10–12)"
    write_result(result, tmp_path)
    index = read_json(tmp_path / "result.json")
    assert index["summary"]["members"] == s["members"]
    assert (tmp_path / "members.png").read_bytes().startswith(b"\x89PNG")


# --- the task layer: ids of single-model runs stay, members share one split ----------------------

def test_a_neutral_parameter_at_its_default_leaves_the_task_id_alone():
    import luigi

    from tasks.train import NeutralDefaults, NeutralIntParameter

    class Before(luigi.Task):
        size = luigi.IntParameter(default=3)

    class After(NeutralDefaults, luigi.Task):
        size = luigi.IntParameter(default=3)
        copies = NeutralIntParameter(default=1)

    def hashed(task):
        return task.task_id.rsplit("_", 1)[1]

    assert hashed(After()) == hashed(Before()) and hashed(After(size=4)) == hashed(Before(size=4))
    assert After().to_str_params() == {"size": "3"} and repr(After()) == "After(size=3)"
    assert hashed(After(copies=2)) != hashed(Before())
    assert After(copies=2).to_str_params(only_significant=True) == {"size": "3", "copies": "2"}
    assert repr(After(copies=2)) == "After(size=3, copies=2)"
    assert After.from_str_params(After().to_str_params()) == After()  # what luigid and range tools do


def test_single_model_runs_keep_their_ids_and_members_share_one_split():
    from tasks import EvaluateCNN, RenderReport, RunPipeline, TrainCNN

    single, member0 = TrainCNN(), TrainCNN(member=0)
    assert member0.task_id == single.task_id and "member" not in single.to_str_params()
    assert "-m" not in single.slug() and single.train_config().seed == single.seed
    evaluation = EvaluateCNN()
    assert evaluation.requires()["models"] == [single]
    assert "ensemble" not in evaluation.to_str_params() and "-k" not in RenderReport().run_id()
    assert RunPipeline(ensemble=1) == RunPipeline()

    ensemble = EvaluateCNN(ensemble=3, seed=7)
    members = ensemble.requires()["models"]
    assert members[0] == TrainCNN(seed=7)  # an ensemble reuses the single model as its member 0
    assert [m.member for m in members] == [0, 1, 2]
    assert [m.train_config().seed for m in members] == [7, 8, 9]
    assert {m.requires() for m in members} == {ensemble.requires()["data"]}  # one split: seed 7's
    assert members[2].slug().startswith("twoconv-e12-s7-m2-")
    assert ensemble.slug().startswith("twoconv-e12-s7-k3-") and ensemble.slug() != EvaluateCNN(seed=7).slug()
    assert re.fullmatch(r"twoconv-e12-s7-k3-[0-9a-f]{8}", RenderReport(ensemble=3, seed=7).run_id())
    with pytest.raises(ValueError, match="ensemble must be >= 1"):
        EvaluateCNN(ensemble=0)
    with pytest.raises(ValueError, match="member must be >= 0"):
        TrainCNN(member=-1)


def test_rerun_command_of_an_ensemble_names_it():
    from tasks import RenderReport
    from tasks.report import rerun_command

    assert "--ensemble 1" in rerun_command(RenderReport())  # explicit: luigi.cfg may set another default
    command = rerun_command(RenderReport(ensemble=4))
    assert "--ensemble 4" in command
    from test_report import _parsed

    assert _parsed(command).ensemble == 4


def test_the_rerun_command_pins_the_members_thread_count_only_when_they_share_one(isolated_storage, caplog):
    """Each member's manifest records the BLAS threads it trained on; the report's rerun command pins the
    count when every member has it, and warns (pinning none) when a cached member was trained on another."""
    from pipeline import store
    from tasks import RenderReport, TrainCNN
    from tasks.report import rerun_command

    report = RenderReport(ensemble=2, seed=7)

    def trained_on(member: int, threads: int) -> None:
        blas = [{"library": "numpy.libs", "num_threads": threads}, {"library": "scipy.libs", "num_threads": 4}]
        directory = TrainCNN(seed=7, member=member).output_dir()
        store.write_json(directory / "result.json", {})
        store.write_manifest(directory, {"task": "TrainCNN", "provenance": {"blas": blas}})

    trained_on(0, 1), trained_on(1, 1)
    assert report.training_threads() == 1  # NumPy's BLAS, not SciPy's
    command = rerun_command(report, blas_threads=report.training_threads(), workers=2)
    assert command.startswith("env OPENBLAS_NUM_THREADS=1 luigi --module tasks RunPipeline --local-scheduler "
                              "--workers 2 ")
    trained_on(0, 2)
    assert report.training_threads() is None
    assert "different BLAS thread counts ([2, 1])" in caplog.text
    assert rerun_command(report, blas_threads=None).startswith("luigi ")
    for member in (0, 1):  # manifests that record no BLAS: nothing to pin, and no failure
        directory = TrainCNN(seed=7, member=member).output_dir()
        store.write_manifest(directory, {"task": "TrainCNN"})
    assert report.training_threads() is None


def test_metrics_of_an_ensemble_are_the_ensembles():
    from pipeline.report.metrics import metrics_record

    train = {"seed": 5, "best_epoch": 2, "epochs_run": 3, "best_val_accuracy": 0.9, "train_seconds": 10.0,
             "params_sha256": "a" * 64}
    rows = [{"member": i, "seed": 5 + i, "best_epoch": 2, "epochs_run": 3, "best_val_accuracy": 0.9,
             "test_accuracy": 0.8, "test_errors": 2, "train_seconds": 10.0 + i, "params_sha256": c * 64}
            for i, c in enumerate("abc")]
    evaluation = {"test_accuracy": 0.9, "ci95": [0.8, 0.95], "n_errors": 1, "n_test": 10, "ece": 0.1,
                  "ensemble": 3, "members": rows, "val_accuracy": 0.93, "model_params_sha256": "e" * 64}
    params = {"epochs": 3, "seed": 5, "preset": "simple", "train_limit": 0, "ensemble": 3}
    m = metrics_record("r", params, train, evaluation, "luigi")
    assert m["ensemble"] == 3 and m["members"] == rows and m["test_accuracy"] == 0.9
    assert m["best_val_accuracy"] == 0.93 and m["params_sha256"] == "e" * 64
    assert m["train_seconds"] == 33.0 and m["epochs_run"] == 9
    single = metrics_record("r", {**params, "ensemble": 1}, train,
                            {k: v for k, v in evaluation.items() if k not in ("ensemble", "members", "val_accuracy")},
                            "luigi")
    assert single["ensemble"] == 1 and single["params_sha256"] == "a" * 64 and single["train_seconds"] == 10.0
    assert single["members"] == [{"member": 0, "seed": 5, "best_epoch": 2, "epochs_run": 3, "best_val_accuracy": 0.9,
                                  "test_accuracy": 0.9, "test_errors": 1, "train_seconds": 10.0,
                                  "params_sha256": "a" * 64}]


# --- for real: two worker processes, one luigid, one ensemble -----------------------------------

DONE = re.compile(r"\) done\s+(\w+)\((.*)\)\s*$", re.MULTILINE)
K = 3


def _done(output: str) -> list[tuple[str, str]]:
    """(family, parameters) of every task this worker process ran to completion."""
    return DONE.findall(output)


def test_two_workers_train_an_ensemble_through_luigid(luigid, tmp_path, mnist_dir):  # noqa: F811
    from pipeline import store
    from pipeline.nn import model_from_state

    data_dir, report_dir = tmp_path / "data", tmp_path / "reports"
    cmd = [sys.executable, "-m", "luigi", "--module", "tasks", "RunPipeline",
           "--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid),
           "--storage-data-dir", str(data_dir), "--storage-report-dir", str(report_dir),
           "--FetchMNIST-mirrors", json.dumps([str(mnist_dir)]),
           "--ensemble", str(K), "--train-limit", "1000", "--epochs", "1", "--preset", "simple", "--seed", "4",
           "--no-lock",  # luigi's per-machine lock would otherwise stop the second process at once
           # wait for work rather than leave when the other worker holds the only runnable task, and ask
           # often: a worker polls every wait-interval + up to wait-jitter seconds
           "--worker-keep-alive", "--worker-wait-interval", "0.2", "--worker-wait-jitter", "0.5"]
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]  # files, so a hung run still shows its logs
    workers = []
    for log in logs:
        with log.open("w") as out:
            workers.append(subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT))
    try:
        for w in workers:
            w.wait(timeout=900)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    outputs = [log.read_text() for log in logs]
    tails = "\n\n".join(o[-3000:] for o in outputs)
    # Luigi's exit code of a worker process that did its part of a shared run: 0, or already_running (10)
    # when it saw the other process run a task it had scheduled, or not_run (25) when it never had to wait
    # for the other one and so never learnt who ran the tasks it did not (its summary: "not granted run
    # permission by the scheduler"). That the run as a whole is done is checked below, and by a rerun.
    assert all(w.returncode in (0, 10, 25) for w in workers), tails

    ran = [_done(o) for o in outputs]
    trained = [sorted(int(m) for f, p in r if f == "TrainCNN" for m in re.findall(r"member=(\d+)", p) or ["0"])
               for r in ran]
    assert all(trained), f"each worker process should have trained a member, got {trained}\n{tails}"
    assert sorted(trained[0] + trained[1]) == list(range(K))
    # every task of the run was done exactly once, by one of the two processes
    counts = collections.Counter(ran[0] + ran[1])
    assert set(counts.values()) == {1}, counts
    assert sorted(f for f, _ in counts) == sorted(["FetchMNIST", "CleanData", "PrepareData", "ExploreData",
                                                   "EvaluateCNN", "RenderReport", "RunIndex", "RunPipeline"]
                                                  + ["TrainCNN"] * K)
    assert _scheduler_tasks(luigid, "FAILED") == {} and _scheduler_tasks(luigid, "PENDING") == {}
    done = _scheduler_tasks(luigid, "DONE")
    assert sum(t["name"] == "TrainCNN" for t in done.values()) == K and len(done) == len(counts)

    # one prepared split, K members on it with seeds 4, 5, 6
    assert len(list((data_dir / "processed").glob("prep-*/data.pkl"))) == 1
    (run_dir,) = [p.parent for p in report_dir.glob("*/metrics.json") if not p.parent.is_symlink()]
    metrics = store.read_verified_json(run_dir / "metrics.json")
    assert re.fullmatch(r"simple-e1-s4-n1000-k3-[0-9a-f]{8}", metrics["run_id"]) and run_dir.name == metrics["run_id"]
    assert metrics["ensemble"] == K and [m["seed"] for m in metrics["members"]] == [4, 5, 6]
    (eval_dir,) = (data_dir / "eval").glob("simple-e1-s4-n1000-k3-*")
    stacked = store.read_verified_pickle(eval_dir / "member_predictions.pkl")
    predictions = store.read_verified_pickle(eval_dir / "predictions.pkl")
    data = store.read_verified_pickle(next((data_dir / "processed").glob("prep-*/data.pkl")))
    labels = predictions["labels"]
    np.testing.assert_array_equal(labels, data["y_test"])
    shas = []
    for i, member in enumerate(metrics["members"]):
        (model_dir,) = (data_dir / "models").glob(f"simple-e1-s4-n1000-{f'm{i}-' if i else ''}[0-9a-f]" + "?" * 9)
        training = store.read_verified_json(model_dir / "result.json")["summary"]
        assert training["seed"] == 4 + i and member["params_sha256"] == training["params_sha256"]
        shas.append(training["params_sha256"])
        # the saved member probabilities are that member's own, recomputed from its model.pkl
        model = model_from_state(store.read_verified_pickle(model_dir / "model.pkl"))
        np.testing.assert_array_equal(stacked["probabilities"][i], model.predict_proba(data["x_test"]))
        assert member["test_accuracy"] == float((stacked["probabilities"][i].argmax(1) == labels).mean())
    # the ensemble's accuracy is the argmax of the mean of its members' probabilities
    mean = stacked["probabilities"].astype(np.float64).mean(axis=0)
    assert metrics["test_accuracy"] == float((mean.argmax(1) == labels).mean())
    assert metrics["test_error_count"] == int((mean.argmax(1) != labels).sum())
    assert metrics["params_sha256"] == hashlib.sha256("\n".join(shas).encode()).hexdigest()
    html = (run_dir / "report.html").read_text()
    assert "ensemble of 3" in html and "Training: member 0 of 3" in html and "<h3>Members and ensemble</h3>" in html
    assert " --ensemble 3 " in metrics["rerun_command"]
    # the whole run is done: the same command again has nothing to do, and says so with exit code 0
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and not _done(again.stdout + again.stderr), again.stderr[-3000:]


# --- one luigi process, two workers: each trains on its share of the cores ----------------------

THREADS_LINE = re.compile(r"(TrainCNN|EvaluateCNN): (\d+) BLAS thread\(s\) \((\d+) Luigi worker\(s\) on (\d+) cores\)")


def _evaluate_ensemble_cli(tmp_path: Path, mnist_dir: Path, env: dict[str, str]) -> str:
    """Run the real `luigi` command for a 2-member ensemble's EvaluateCNN with 2 local workers; its log."""
    cmd = ["luigi", "--module", "tasks", "EvaluateCNN", "--local-scheduler", "--workers", "2",
           "--storage-data-dir", str(tmp_path / "data"), "--storage-report-dir", str(tmp_path / "reports"),
           "--FetchMNIST-mirrors", json.dumps([str(mnist_dir)]),
           "--ensemble", "2", "--train-limit", "600", "--epochs", "1", "--preset", "simple", "--seed", "8"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def test_two_local_workers_split_the_cores_between_them(tmp_path, mnist_dir):
    import os

    from pipeline.nn.kernels.parallel import THREAD_VARIABLES, threads_per_process, usable_cores

    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    log = _evaluate_ensemble_cli(tmp_path / "shared", mnist_dir, env)
    lines = THREADS_LINE.findall(log)
    share = threads_per_process(2)
    assert sorted(task for task, *_ in lines) == ["EvaluateCNN", "TrainCNN", "TrainCNN"], log[-3000:]
    assert {(int(t), int(w), int(c)) for _, t, w, c in lines} == {(share, 2, usable_cores())}
    # a thread count the user set is theirs: no task changes it
    log = _evaluate_ensemble_cli(tmp_path / "user", mnist_dir, {**env, "OPENBLAS_NUM_THREADS": "1"})
    assert THREADS_LINE.findall(log) == [] and "TrainCNN: best epoch" in log
