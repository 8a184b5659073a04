"""The part of a loaded object at a key: ``x_train``, ``normalization.mean``, ``per_class.recall``, ``3``.

A key is a dotted path; each step is a dict key, a DataFrame column or a list/tuple
index, and takes the longest run of dotted parts that names one (so keys that hold
dots, such as a model's ``0.conv.W``, work). An unknown key lists what is there.
"""
from __future__ import annotations

import difflib
from typing import Any

from pipeline.inspect.errors import NotFound


class KeyNotFound(NotFound):
    """The key names nothing in the object; the message lists the nearest keys."""


def keys_of(obj: Any) -> list[str]:
    """The keys one step below ``obj`` (dict keys, DataFrame columns, list indices), as strings."""
    if isinstance(obj, dict):
        return [str(k) for k in obj]
    if hasattr(obj, "columns") and hasattr(obj, "iloc"):
        return [str(c) for c in obj.columns]
    if isinstance(obj, (list, tuple)):
        return [str(i) for i in range(len(obj))]
    return []


def _step(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if str(k) == key:
                return v
        raise KeyError(key)
    if hasattr(obj, "columns") and hasattr(obj, "iloc"):
        for c in obj.columns:
            if str(c) == key:
                return obj[c]
        raise KeyError(key)
    if isinstance(obj, (list, tuple)) and key.lstrip("-").isdigit():
        return obj[int(key)]
    raise KeyError(key)


def pick(obj: Any, key: str | None) -> Any:
    """``obj`` itself when ``key`` is None or empty, else the part it names (see the module docstring).

    Keys may themselves hold dots (a model's ``params.0.conv.W``): at each level the longest run of
    dotted parts that is a key there is taken.
    """
    if not key:
        return obj
    parts, current, walked = key.split("."), obj, []
    while len(walked) < len(parts):
        rest = parts[len(walked):]
        for n in range(len(rest), 0, -1):
            try:
                current = _step(current, ".".join(rest[:n]))
            except (KeyError, IndexError):
                continue
            walked += rest[:n]
            break
        else:
            where = ".".join(walked) or "the top level"
            available = keys_of(current)
            near = difflib.get_close_matches(".".join(rest), available, n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            listing = ", ".join(available[:30]) + (" ..." if len(available) > 30 else "")
            raise KeyNotFound(f"no key {'.'.join(rest)!r} at {where}{hint}. Keys there: "
                              f"{listing or '(none: not a container)'}")
    return current
