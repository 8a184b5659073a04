"""Resume semantics of PipelineTask: no-op when up to date, rebuild downstream of a deleted output,
and the reasons a task is stale."""
from __future__ import annotations

import os

import luigi
import pytest

from pipeline import store
from pipeline.result import RESULT_FILE, StageResult
from tasks.base import PipelineTask

RUNS: list[str] = []


def _value(value: int) -> StageResult:
    return StageResult(title="value", summary={"value": value}, artifacts={"value": {"value": value}})


class Source(PipelineTask):
    stage = "t_source"
    primary = "value.pkl"
    value = luigi.IntParameter(default=1)

    def run(self):
        RUNS.append("Source")
        self.write_result(_value(self.value))


class Double(PipelineTask):
    stage = "t_double"
    primary = "value.pkl"
    value = luigi.IntParameter(default=1)

    def requires(self):
        return Source(value=self.value)

    def run(self):
        RUNS.append("Double")
        self.write_result(_value(2 * self.load_input()["value"]))


class Side(PipelineTask):
    stage = "t_side"
    primary = "value.pkl"

    def run(self):
        RUNS.append("Side")
        self.write_result(_value(0))


class Sink(PipelineTask):
    stage = "t_sink"
    primary = "value.pkl"
    value = luigi.IntParameter(default=1)

    def requires(self):
        return {"double": Double(value=self.value), "side": Side()}

    def run(self):
        RUNS.append("Sink")
        self.write_result(_value(self.load_input("double")["value"] + 1))


def _build(task) -> list[str]:
    RUNS.clear()
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")
    return sorted(RUNS)


def test_second_run_is_a_no_op(isolated_storage):
    assert _build(Sink(value=3)) == ["Double", "Side", "Sink", "Source"]
    assert Sink(value=3).output_load() == {"value": 7}
    assert Sink(value=3).output_load(RESULT_FILE)["summary"] == {"value": 7}
    assert _build(Sink(value=3)) == []


def test_deleting_an_intermediate_reruns_it_and_only_its_dependents(isolated_storage):
    _build(Sink(value=2))
    os.remove(Double(value=2).output().path)
    assert Double(value=2).stale_reasons() == ["incomplete output: value.pkl is listed in manifest.json but missing",
                                               "incomplete output: no value.pkl"]
    assert _build(Sink(value=2)) == ["Double", "Sink"]


def test_rebuilt_upstream_makes_downstream_stale(isolated_storage):
    _build(Sink(value=2))
    # Age every output, then rebuild the source by hand (as a user rerunning one task would);
    # ageing makes the test independent of the filesystem's timestamp resolution.
    for task in (Source(value=2), Double(value=2), Side(), Sink(value=2)):
        past = os.stat(task.manifest_path()).st_mtime_ns - 10**10
        os.utime(task.manifest_path(), ns=(past, past))
    Source(value=2).run()
    assert not Sink(value=2).complete()
    assert Double(value=2).stale_reasons() == [f"newer input: {Source(value=2).task_id} was rebuilt after this output"]
    assert _build(Sink(value=2)) == ["Double", "Sink"]


def test_different_parameters_get_different_output_dirs(isolated_storage):
    assert Source(value=1).output_dir() != Source(value=2).output_dir()
    assert Source(value=1).output_dir() == Source(value=1).output_dir()


def test_stale_reasons_name_missing_output_changed_code_and_changed_parameters(isolated_storage, monkeypatch):
    assert Source(value=5).stale_reasons() == ["missing output"]
    _build(Source(value=5))
    assert Source(value=5).stale_reasons() == []
    manifest = store.read_manifest(Source(value=5).output_dir())
    assert manifest["task"] == "Source" and manifest["params"] == {"value": "5"}
    assert "pipeline.result" in manifest["code"]["modules"] and "tasks.base.PipelineTask" in manifest["code"]["modules"]
    assert manifest["provenance"]["libraries"]["numpy"] and manifest["provenance"]["blas"]

    changed = {**Source.code_digests(), "pipeline.result": "0" * 64}
    monkeypatch.setattr(Source, "code_digests", classmethod(lambda cls: changed))
    assert Source(value=5).stale_reasons() == ["changed code: pipeline.result"]
    monkeypatch.undo()

    record = store.read_manifest(Source(value=5).output_dir())
    record["params"] = {"value": "6"}
    store.write_json(Source(value=5).manifest_path(), record)
    assert Source(value=5).stale_reasons() == ["changed parameters: value"]


def test_an_unreadable_manifest_means_rebuild_not_a_crash(isolated_storage):
    _build(Source(value=8))
    Source(value=8).manifest_path().write_text("{ truncated")
    assert Source(value=8).stale_reasons()[0].startswith("unreadable output:")
    assert _build(Source(value=8)) == ["Source"]
    assert Source(value=8).output_load() == {"value": 8}


def test_a_changed_output_file_is_refused_on_load_not_rebuilt_quietly(isolated_storage):
    import pickle

    _build(Sink(value=4))
    path = Double(value=4).output().path
    with open(path, "wb") as fh:
        pickle.dump({"value": 1000}, fh)
    os.remove(Sink(value=4).manifest_path())  # Sink must run again, and so load Double's file
    RUNS.clear()
    assert not luigi.build([Sink(value=4)], local_scheduler=True, log_level="CRITICAL")
    assert RUNS == ["Sink"]  # Double was not rebuilt behind the user's back
    with pytest.raises(store.IntegrityError, match="was changed after it was written"):
        Double(value=4).output_load()
