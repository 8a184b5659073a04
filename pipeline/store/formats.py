"""The two formats every artifact is stored in: indented JSON and plain pickles.

Pickles are read back only through :func:`pipeline.store.read_verified_pickle` (sha256 against
the manifest first, then a restricted unpickler): there is deliberately no plain loader here.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.store.atomic import atomic_path, write_bytes

PICKLE_PROTOCOL = 4  # readable by every Python >= 3.4


def to_jsonable(obj: Any) -> Any:
    """Convert NumPy scalars/arrays, tuples and Paths inside ``obj`` to plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def json_bytes(obj: Any) -> bytes:
    """``obj`` as indented, key-sorted JSON text (UTF-8), as every JSON artifact is written."""
    return (json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n").encode("utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    write_bytes(path, json_bytes(obj))


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_pickle(path: str | os.PathLike, obj: Any) -> None:
    """Pickle ``obj`` to ``path`` atomically (protocol 4, plain containers preferred)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            pickle.dump(obj, fh, protocol=PICKLE_PROTOCOL)
