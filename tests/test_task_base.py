"""Resume semantics of PipelineTask: no-op when up to date, rebuild downstream of a deleted output."""
from __future__ import annotations

import os

import luigi

from pipeline import store
from tasks.base import PipelineTask

RUNS: list[str] = []


class Source(PipelineTask):
    stage = "t_source"
    primary = "value.json"
    value = luigi.IntParameter(default=1)

    def run(self):
        RUNS.append("Source")
        with store.staged_dir(self.output_dir()) as tmp:
            store.write_json(tmp / self.primary, {"value": self.value})


class Double(PipelineTask):
    stage = "t_double"
    primary = "value.json"
    value = luigi.IntParameter(default=1)

    def requires(self):
        return Source(value=self.value)

    def run(self):
        RUNS.append("Double")
        got = store.read_json(self.input().path)["value"]
        with store.staged_dir(self.output_dir()) as tmp:
            store.write_json(tmp / self.primary, {"value": 2 * got})


class Side(PipelineTask):
    stage = "t_side"
    primary = "value.json"

    def run(self):
        RUNS.append("Side")
        with store.staged_dir(self.output_dir()) as tmp:
            store.write_json(tmp / self.primary, {"value": 0})


class Sink(PipelineTask):
    stage = "t_sink"
    primary = "value.json"
    value = luigi.IntParameter(default=1)

    def requires(self):
        return {"double": Double(value=self.value), "side": Side()}

    def run(self):
        RUNS.append("Sink")
        got = store.read_json(self.input()["double"].path)["value"]
        with store.staged_dir(self.output_dir()) as tmp:
            store.write_json(tmp / self.primary, {"value": got + 1})


def _build(task) -> list[str]:
    RUNS.clear()
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")
    return sorted(RUNS)


def test_second_run_is_a_no_op(isolated_storage):
    assert _build(Sink(value=3)) == ["Double", "Side", "Sink", "Source"]
    assert store.read_json(Sink(value=3).output().path) == {"value": 7}
    assert _build(Sink(value=3)) == []


def test_deleting_an_intermediate_reruns_it_and_only_its_dependents(isolated_storage):
    _build(Sink(value=2))
    os.remove(Double(value=2).output().path)
    assert _build(Sink(value=2)) == ["Double", "Sink"]


def test_rebuilt_upstream_makes_downstream_stale(isolated_storage):
    _build(Sink(value=2))
    # Age every output, then rebuild the source by hand (as a user rerunning one task would);
    # ageing makes the test independent of the filesystem's timestamp resolution.
    for task in (Source(value=2), Double(value=2), Side(), Sink(value=2)):
        past = os.stat(task.output().path).st_mtime_ns - 10**10
        os.utime(task.output().path, ns=(past, past))
    Source(value=2).run()
    assert not Sink(value=2).complete()
    assert _build(Sink(value=2)) == ["Double", "Sink"]


def test_different_parameters_get_different_output_dirs(isolated_storage):
    assert Source(value=1).output_dir() != Source(value=2).output_dir()
    assert Source(value=1).output_dir() == Source(value=1).output_dir()
