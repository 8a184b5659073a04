"""A loaded object, or a part of it, written for other tools: ``.npz`` (NumPy) or ``.csv`` (any).

``.npz`` takes an array (saved under its key's name), a dict (every array in it,
nested keys joined with dots; other values are skipped and named) or a DataFrame
(one array per column, plus ``index``). ``.csv`` takes a DataFrame or a Series (with
its index), or an array of one or two dimensions (no index column). Files are written
atomically: an interrupted export leaves no half-written file.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = (".npz", ".csv")


class ExportError(ValueError):
    """The object cannot be written in the requested format; the message says what would work."""


def _is_frame(obj: Any) -> bool:
    return hasattr(obj, "columns") and hasattr(obj, "iloc")


def _is_series(obj: Any) -> bool:
    return hasattr(obj, "iloc") and hasattr(obj, "to_frame")


def arrays_in(obj: Any, name: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """({dotted name: array}, [names skipped]) of every array inside ``obj`` (arrays, frames, dicts)."""
    if isinstance(obj, np.ndarray):
        return {name: obj}, []
    if _is_frame(obj):
        found = {f"{name}.{c}" if name else str(c): obj[c].to_numpy() for c in obj.columns}
        found[f"{name}.index" if name else "index"] = obj.index.to_numpy()
        return found, []
    if _is_series(obj):
        return {name or "values": obj.to_numpy()}, []
    if isinstance(obj, dict):
        found, skipped = {}, []
        for key, value in obj.items():
            sub_found, sub_skipped = arrays_in(value, f"{name}.{key}" if name else str(key))
            found.update(sub_found)
            skipped += sub_skipped
        return found, skipped
    return {}, [name or type(obj).__name__]


def npz_bytes(obj: Any, name: str = "") -> tuple[bytes, list[str], list[str]]:
    """(the .npz file's bytes, names written, names skipped) of the arrays in ``obj``."""
    arrays, skipped = arrays_in(obj, name or ("array" if isinstance(obj, np.ndarray) else ""))
    if not arrays:
        raise ExportError(f"there is no array here to write as .npz (found {type(obj).__name__}); "
                          "choose a part that holds arrays with --key")
    if any(a.dtype == object for a in arrays.values()):
        objects = [k for k, a in arrays.items() if a.dtype == object]
        arrays = {k: a for k, a in arrays.items() if a.dtype != object}
        skipped += objects  # object arrays would need pickle to load: never written
        if not arrays:
            raise ExportError(f"these arrays hold Python objects, which .npz cannot store without pickle: {objects}")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue(), sorted(arrays), skipped


def csv_text(obj: Any, name: str = "") -> str:
    """``obj`` as CSV text: DataFrame/Series with their index, arrays of 1 or 2 dimensions without."""
    import pandas as pd

    if _is_frame(obj):
        return obj.to_csv()
    if _is_series(obj):
        return obj.to_frame(name=obj.name if obj.name is not None else (name or "value")).to_csv()
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(v, (int, float, str)) for v in obj):
        obj = np.asarray(obj)
    if isinstance(obj, np.ndarray) and obj.ndim in (1, 2):
        frame = pd.DataFrame(obj) if obj.ndim == 2 else pd.DataFrame({name or "value": obj})
        return frame.to_csv(index=False)
    shape = f" of shape {obj.shape}" if isinstance(obj, np.ndarray) else ""
    raise ExportError(f".csv needs a DataFrame, a Series or an array of 1 or 2 dimensions; this is "
                      f"{type(obj).__name__}{shape}: choose a part with --key, or write .npz")


def export(obj: Any, path: str | os.PathLike, name: str = "") -> dict[str, Any]:
    """Write ``obj`` to ``path`` (.npz or .csv by its suffix); return {"path", "format", "written", "skipped"}."""
    from pipeline import store

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        data, written, skipped = npz_bytes(obj, name)
    elif suffix == ".csv":
        data, written, skipped = csv_text(obj, name).encode("utf-8"), [name or "table"], []
    else:
        raise ExportError(f"cannot export to {path.name}: the file name must end in one of {', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {path}: the directory {path.parent} does not exist")
    store.write_bytes(path, data)
    return {"path": str(path), "format": suffix[1:], "written": written, "skipped": skipped}
