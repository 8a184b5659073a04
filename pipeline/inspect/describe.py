"""Readable summaries of loaded objects: what a pickle or JSON file holds, without printing it whole.

``describe(obj)`` returns lines of text: for a dict its keys, each with a summary;
for an array its shape, dtype, min, max and mean; for a DataFrame its shape,
columns with dtypes and first rows; for a saved model (the dict
``pipeline.nn.model_state`` returns) the model's Keras-like summary first.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

MAX_ITEMS = 40  # keys or list items shown per level
MAX_DEPTH = 4  # nesting levels expanded
HEAD_ROWS = 5  # DataFrame rows shown of a long frame
ALL_ROWS = 12  # a frame this short is shown whole
INDENT = "  "


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(x: float) -> str:
    return f"{x:.6g}"


def array_line(arr: np.ndarray) -> str:
    """``ndarray (N, C, H, W) float32  min 0  max 1  mean 0.1307`` (statistics of numeric, non-empty arrays)."""
    head = f"ndarray {tuple(arr.shape)} {arr.dtype}"
    if arr.size == 0:
        return head + "  (empty)"
    if arr.dtype == np.bool_:
        return head + f"  {int(arr.sum()):,} true of {arr.size:,}"
    if np.issubdtype(arr.dtype, np.number) and not np.issubdtype(arr.dtype, np.complexfloating):
        finite = arr[np.isfinite(arr)] if np.issubdtype(arr.dtype, np.floating) else arr
        if finite.size == 0:
            return head + "  (no finite values)"
        nonfinite = arr.size - finite.size
        extra = f"  ({nonfinite:,} not finite)" if nonfinite else ""
        mean = float(np.mean(finite, dtype=np.float64))
        return head + f"  min {_number(finite.min())}  max {_number(finite.max())}  mean {_number(mean)}{extra}"
    return head


def _is_frame(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("pandas")


def _is_series(obj: Any) -> bool:
    return type(obj).__name__ == "Series" and type(obj).__module__.startswith("pandas")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def frame_lines(frame: Any, head: int = HEAD_ROWS) -> list[str]:
    """A DataFrame: shape, then (indented) index, columns with dtypes and its first ``head`` rows
    (all rows of a short frame)."""
    head = len(frame) if len(frame) <= ALL_ROWS else head
    index = ", ".join(str(n) for n in frame.index.names if n is not None) or "unnamed"
    lines = [f"index: {_short(index)} ({frame.index.dtype})",
             "columns: " + _short(", ".join(f"{c} ({t})" for c, t in frame.dtypes.items()), 400)]
    if len(frame):
        lines.append("rows:" if head >= len(frame) else f"first {head} rows:")
        lines += [INDENT + line for line in frame.head(head).to_string().splitlines()]
    return [f"DataFrame {_plural(frame.shape[0], 'row')} x {_plural(frame.shape[1], 'column')}"] + \
        [INDENT + line for line in lines]


def _is_model_state(obj: Any) -> bool:
    from pipeline.nn.serialize import FORMAT

    return isinstance(obj, dict) and obj.get("format") == FORMAT


def model_lines(state: dict) -> list[str]:
    """The saved model's summary (layers, output shapes, parameter counts), rebuilt from its dict."""
    from pipeline.nn import model_from_state

    try:
        summary = model_from_state(state).summary()
    except (ValueError, KeyError, TypeError) as exc:
        return [f"a saved model that does not rebuild: {exc}"]
    return ["saved model (pipeline.nn.model_from_state rebuilds it):"] + [INDENT + s for s in summary.splitlines()]


def _leaf(obj: Any) -> str | None:
    """One line for an object with no parts worth expanding; None for containers."""
    if isinstance(obj, np.ndarray):
        return array_line(obj)
    if isinstance(obj, np.generic):
        return f"{type(obj).__name__} {_short(repr(obj.item()))}"
    if obj is None or isinstance(obj, (bool, int, float, complex)):
        return f"{type(obj).__name__} {obj!r}"
    if isinstance(obj, str):
        return f"str {_short(repr(obj))}" + (f" ({len(obj):,} chars)" if len(obj) > 77 else "")
    if isinstance(obj, (bytes, bytearray)):
        return f"{type(obj).__name__} ({len(obj):,} bytes)"
    if _is_series(obj):
        values = obj.to_numpy()
        stats = array_line(values).split("  ", 1)[1:] if values.dtype != object else []
        return f"Series {len(obj):,} values {obj.dtype}" + ("  " + stats[0] if stats else "")
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                      for v in obj):
        return f"{type(obj).__name__} of {len(obj):,} numbers  " + array_line(np.asarray(obj)).split("  ", 1)[1]
    return None


def describe(obj: Any, depth: int = 0, max_depth: int = MAX_DEPTH) -> list[str]:
    """Lines of text summarising ``obj``; nested containers are indented two spaces per level."""
    leaf = _leaf(obj)
    if leaf is not None:
        return [leaf]
    if _is_frame(obj):
        return frame_lines(obj)
    lines: list[str] = []
    model = _is_model_state(obj)
    if model:
        lines += model_lines(obj)
    if isinstance(obj, dict):
        lines.append(f"dict with {_plural(len(obj), 'key')}")
        items = list(obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        lines.append(f"{type(obj).__name__} of {_plural(len(obj), 'item')}")
        items = list(enumerate(obj if isinstance(obj, (list, tuple)) else sorted(obj, key=repr)))
    else:
        return [f"{type(obj).__name__} {_short(repr(obj))}"]
    if depth >= max_depth:
        return lines[:-1] + [lines[-1] + " (not expanded)"]
    for key, value in items[:MAX_ITEMS]:
        if model and key == "spec":  # the layer table above says it better
            lines.append(f"{INDENT}spec: list of {_plural(len(value), 'layer')} (the table above)")
            continue
        sub = describe(value, depth + 1, max_depth)
        lines.append(f"{INDENT}{key}: {sub[0]}")
        lines += [INDENT + line for line in sub[1:]]
    if len(items) > MAX_ITEMS:
        lines.append(f"{INDENT}... {len(items) - MAX_ITEMS:,} more")
    return lines


def pretty_json(obj: Any) -> str:
    """A JSON document as indented text, keys in file order."""
    return json.dumps(obj, indent=2, ensure_ascii=False)
