"""Plain-text output: byte counts and aligned tables."""
from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: int) -> str:
    """``1.8 MiB``: binary units, one decimal above bytes."""
    size, unit = float(n), 0
    while size >= 1024 and unit < len(UNITS) - 1:
        size, unit = size / 1024, unit + 1
    return f"{int(size)} B" if unit == 0 else f"{size:.1f} {UNITS[unit]}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], indent: str = "") -> list[str]:
    """Lines of a left-aligned table with two spaces between columns (the last column is not padded)."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return indent + "  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths)) + "  " + cells[-1]

    return [line(list(headers))] + [line(r) for r in rows]


def emit(lines: Iterable[str]) -> None:
    """Print lines to stdout."""
    for line in lines:
        print(line)


def emit_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON (NumPy values converted) to stdout."""
    from pipeline.store import to_jsonable

    json.dump(to_jsonable(obj), sys.stdout, indent=2)
    sys.stdout.write("\n")
