"""Artifact storage: atomic writes, formats, integrity manifests and verified loads, provenance.

Everything a task writes goes through here, so ``from pipeline import store``
and ``store.write_json(...)`` is the whole vocabulary a stage needs.
"""
from pipeline.store.atomic import FILE_MODE, StorageFullError, atomic_path, fsync_dir, staged_dir, write_bytes
from pipeline.store.formats import (PICKLE_PROTOCOL, json_bytes, read_json, to_jsonable,
                                    write_json, write_pickle)
from pipeline.store.hashing import sha256_file
from pipeline.store.manifest import (MANIFEST_FILE, IntegrityError, listing_problems, missing_files, read_manifest,
                                     read_verified, read_verified_json, read_verified_pickle, write_manifest)

__all__ = ["FILE_MODE", "StorageFullError", "atomic_path", "fsync_dir", "staged_dir", "write_bytes", "PICKLE_PROTOCOL",
           "json_bytes", "read_json", "to_jsonable", "write_json", "write_pickle",
           "sha256_file", "MANIFEST_FILE", "IntegrityError", "listing_problems", "missing_files", "read_manifest",
           "read_verified", "read_verified_json", "read_verified_pickle", "write_manifest"]
