"""Atomic writes: a failure never leaves a partial file or a half-built directory."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from pipeline import store
from pipeline.nn.digest import sha256_arrays


def test_json_round_trip_converts_numpy_types(tmp_path):
    path = tmp_path / "a" / "m.json"
    store.write_json(path, {"acc": np.float32(0.5), "n": np.int64(3), "v": np.arange(3), "ok": np.bool_(True)})
    assert store.read_json(path) == {"acc": 0.5, "n": 3, "v": [0, 1, 2], "ok": True}
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]  # no temporary left behind


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "x.pkl"
    store.write_pickle(path, {"v": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.write_pickle(path, {"v": Unpicklable()})
    assert pickle.loads(path.read_bytes()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pkl"]


# A truncated pickle: tests/test_integrity.py (every pickle is read through the manifest check).


def test_staged_dir_replaces_whole_directory(tmp_path):
    final = tmp_path / "out"
    with store.staged_dir(final) as tmp:
        (tmp / "a.txt").write_text("one")
        (tmp / "b.txt").write_text("one")
    with store.staged_dir(final) as tmp:
        (tmp / "a.txt").write_text("two")
    assert sorted(p.name for p in final.iterdir()) == ["a.txt"]  # b.txt of the old run is gone
    assert (final / "a.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staged_dir_failure_leaves_old_result_untouched(tmp_path):
    final = tmp_path / "out"
    with store.staged_dir(final) as tmp:
        (tmp / "a.txt").write_text("good")
    with pytest.raises(KeyError):
        with store.staged_dir(final) as tmp:
            (tmp / "a.txt").write_text("half")
            raise KeyError("crash mid-task")
    assert (final / "a.txt").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_sha256_arrays_depends_on_values_dtype_and_names():
    a = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    h = sha256_arrays(a)
    assert h == sha256_arrays({"w": a["w"].copy()})
    assert h != sha256_arrays({"w": a["w"].astype(np.float64)})
    assert h != sha256_arrays({"w": a["w"].reshape(3, 2)})
    assert h != sha256_arrays({"v": a["w"]})
    b = a["w"].copy()
    b[0, 0] = np.nextafter(np.float32(0), np.float32(1))
    assert h != sha256_arrays({"w": b})
