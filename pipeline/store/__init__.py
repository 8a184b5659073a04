"""Artifact storage: atomic writes, the JSON and pickle formats, content hashes.

Everything a task writes goes through here, so ``from pipeline import store``
and ``store.write_json(...)`` is the whole vocabulary a stage needs.
"""
from pipeline.store.atomic import FILE_MODE, atomic_path, fsync_dir, staged_dir, write_bytes
from pipeline.store.formats import (PICKLE_PROTOCOL, json_bytes, read_json, read_pickle, to_jsonable,
                                    write_json, write_pickle)
from pipeline.store.hashing import sha256_file

__all__ = ["FILE_MODE", "atomic_path", "fsync_dir", "staged_dir", "write_bytes", "PICKLE_PROTOCOL",
           "json_bytes", "read_json", "read_pickle", "to_jsonable", "write_json", "write_pickle",
           "sha256_file"]
