"""Integrity: manifests, verified loads, the restricted unpickler, code digests and the debris sweep."""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from pipeline import store
from pipeline.store import code, debris
from pipeline.store.safe_pickle import ForbiddenPickleError, loads


class Payload:
    """Unpickling this runs ``touch <marker>``: what an attacker would plant in a pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _sealed(tmp_path, obj, name="data.pkl"):
    store.write_pickle(tmp_path / name, obj)
    store.write_manifest(tmp_path, {"task": "Example"})
    return tmp_path / name


def test_verified_pickle_round_trips_plain_data(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "c": pd.Categorical(["u", "v"]), "t": pd.to_datetime(["2020-01-01"] * 2)})
    obj = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(1.5), "frame": frame,
           "nested": [(1, "a"), {"k": None}], "dtype": np.dtype("uint8")}
    loaded = store.read_verified_pickle(_sealed(tmp_path, obj))
    np.testing.assert_array_equal(loaded["x"], obj["x"])
    pd.testing.assert_frame_equal(loaded["frame"], frame)
    assert loaded["nested"] == [(1, "a"), {"k": None}] and loaded["dtype"] == np.dtype("uint8")
    manifest = store.read_manifest(tmp_path)
    assert manifest["task"] == "Example"
    assert manifest["files"]["data.pkl"] == {"sha256": store.sha256_file(tmp_path / "data.pkl"),
                                             "bytes": (tmp_path / "data.pkl").stat().st_size}


def test_tampered_pickle_is_refused_before_unpickling_and_the_payload_never_runs(tmp_path):
    path = _sealed(tmp_path, {"x": np.zeros(3)})
    expected = store.sha256_file(path)
    marker = tmp_path / "pwned"
    path.write_bytes(pickle.dumps({"x": np.zeros(3), "evil": Payload(marker)}))
    with pytest.raises(store.IntegrityError) as err:
        store.read_verified_pickle(path)
    message = str(err.value)
    assert str(path) in message and expected in message and store.sha256_file(path) in message
    assert "delete" in message and "rerun" in message
    assert not marker.exists()


def test_foreign_pickle_with_a_matching_manifest_is_still_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = _sealed(tmp_path, {"evil": Payload(marker)})  # someone sealed it too: the unpickler stops it
    with pytest.raises(store.IntegrityError, match="not plain data"):
        store.read_verified_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    b"cbuiltins\neval\n(S'1+1'\ntR.",          # builtins other than containers
    b"cpandas\nread_csv\n(S'/etc/passwd'\ntR.",  # pandas functions (only classes may be named)
    b"cnumpy\nload\n(S'/etc/passwd'\ntR.",       # numpy beyond arrays, dtypes and scalars
    b"csubprocess\ncall\n(S'true'\ntR.",
])
def test_restricted_unpickler_refuses_globals_that_are_not_data(payload):
    with pytest.raises(ForbiddenPickleError):
        loads(payload)


def test_truncated_pickle_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "t.pkl"
    path.write_bytes(pickle.dumps({"a": np.zeros(1000)})[:100])
    store.write_manifest(tmp_path)  # sealed as it is: the hash matches, the content is cut
    with pytest.raises(store.IntegrityError, match=r"t\.pkl is not a complete pickle.*delete .* and rerun"):
        store.read_verified_pickle(path)


def test_unparsable_missing_and_foreign_manifests_are_named(tmp_path):
    path = _sealed(tmp_path, {"a": 1})
    (tmp_path / store.MANIFEST_FILE).write_text("{ not json")
    with pytest.raises(store.IntegrityError, match=r"manifest\.json does not parse.*delete"):
        store.read_verified_pickle(path)
    (tmp_path / store.MANIFEST_FILE).write_text('{"files": {}}')
    with pytest.raises(store.IntegrityError, match="not a manifest of this pipeline"):
        store.read_verified_pickle(path)
    (tmp_path / store.MANIFEST_FILE).unlink()
    with pytest.raises(store.IntegrityError, match=r"manifest\.json is missing"):
        store.read_verified_pickle(path)


def test_listed_file_missing_and_unlisted_file(tmp_path):
    path = _sealed(tmp_path, {"a": 1})
    (tmp_path / "extra.pkl").write_bytes(pickle.dumps(1))
    with pytest.raises(store.IntegrityError, match=r"extra\.pkl is not listed"):
        store.read_verified_pickle(tmp_path / "extra.pkl")
    path.unlink()
    assert store.listing_problems(tmp_path) == ["data.pkl is listed in the manifest but missing"]
    with pytest.raises(store.IntegrityError, match="listed in the manifest but missing"):
        store.read_verified_pickle(path)


def test_code_digest_ignores_comments_formatting_and_docstrings_but_not_semantics():
    import ast

    def digest(src):
        return code.normalized_dump([ast.parse(textwrap.dedent(src))])

    base = digest('''
        def f(x):
            """Scale x."""
            return x * 2
    ''')
    same = digest('''
        # a comment
        def f( x ):
            """Another docstring, reflowed."""

            return (x *
                    2)  # trailing comment
    ''')
    other = digest('''
        def f(x):
            return x * 3
    ''')
    assert base == same
    assert base != other


def test_closure_follows_lazy_imports_inside_functions():
    digests = code.closure_digests(["pipeline.result"])
    # write_result imports pipeline.store and pipeline.figures inside the function body
    assert {"pipeline.result", "pipeline.store", "pipeline.figures", "pipeline.store.atomic"} <= set(digests)
    assert all(name.startswith("pipeline") for name in digests)


_KILLED_WRITER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from pipeline import store
    root = Path(sys.argv[1])
    with store.staged_dir(root / "out") as tmp:
        (tmp / "half.pkl").write_bytes(b"partial")
        with store.atomic_path(root / "single.json") as t:
            t.write_bytes(b"{")
            print("ready", flush=True)
            time.sleep(60)
''')


def _start_writer(root):
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _debris(root):
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_debris_of_a_killed_process_is_swept_and_a_live_process_is_left_alone(tmp_path):
    live = _start_writer(tmp_path / "live")
    killed = _start_writer(tmp_path / "killed")
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        left = _debris(tmp_path / "killed")
        assert any(n.endswith(".staging") for n in left) and any(n.endswith(".tmp") for n in left)
        assert not (tmp_path / "killed" / "out").exists() and not (tmp_path / "killed" / "single.json").exists()

        removed = debris.sweep(tmp_path / "killed")
        assert sorted(p.name for p in removed) == left
        assert _debris(tmp_path / "killed") == []

        in_progress = _debris(tmp_path / "live")
        assert len(in_progress) == 2
        assert debris.sweep(tmp_path / "live") == []  # its owner still runs: never touched
        assert _debris(tmp_path / "live") == in_progress
    finally:
        live.kill()
        live.wait(10)


def test_a_reused_pid_does_not_keep_debris_alive(tmp_path):
    # Our own (live) pid, but on an entry older than this process: the pid was reused.
    name = f".x.pkl{debris.owner_tag()}abc.tmp"
    old = tmp_path / name
    old.write_bytes(b"")
    past = time.time() - 10 * 24 * 3600
    os.utime(old, (past, past))
    assert debris.is_orphan(old)
    fresh = tmp_path / f".y.pkl{debris.owner_tag()}abc.tmp"
    fresh.write_bytes(b"")
    assert not debris.is_orphan(fresh)
    assert not debris.is_orphan(tmp_path / "plain.tmp")


_HOLD = textwrap.dedent('''
    import sys, time
    from pipeline.store import lock
    with lock.exclusive(sys.argv[1], timeout=5):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
''')


def test_lock_waits_for_its_holder_reports_and_says_how_long(tmp_path):
    from pipeline.store import lock

    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path / ".x.lock"), "1.2"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    waits = []
    with lock.exclusive(tmp_path / ".x.lock", timeout=30, on_wait=waits.append, poll=0.05) as waited:
        assert waited >= 0.8
    holder.wait(10)
    assert waits and waits[0] < 0.5  # told at once, not after report_every
    with lock.exclusive(tmp_path / ".x.lock", timeout=1) as waited:
        assert waited == 0.0


def test_lock_timeout_and_a_killed_holder_releases_it(tmp_path):
    from pipeline.store import lock

    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path / ".y.lock"), "60"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(lock.LockTimeout, match="held by another process"):
        with lock.exclusive(tmp_path / ".y.lock", timeout=0.3, poll=0.05):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    with lock.exclusive(tmp_path / ".y.lock", timeout=5) as waited:  # the kernel dropped the dead holder's lock
        assert waited < 1.0
